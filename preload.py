"""Command-line options of the extension, added by the WebUI before it parses its arguments
(modules/script_loading.py:29-32 calls ``preload(parser)``)."""


def preload(parser):
    parser.add_argument(
        "--latentfix-trace",
        type=str,
        default=None,
        metavar="FILE",
        help="LatentFix: append per-step latent statistics (timestep; per channel mean, std, min, max before and "
        "after correction) of every corrected generation to FILE as JSON lines",
    )
    parser.add_argument(
        "--latentfix-disable",
        action="store_true",
        help="LatentFix: turn the extension off for this launch (no correction, whatever the UI or API asks)",
    )
