"""Imitates modules/errors.py `report`: print the traceback and carry on. Also keeps the texts in
`reported` so tests can assert that no hook or callback raised."""
import sys
import traceback

reported = []


def report(message, *, exc_info=False):
    text = message + ("\n" + traceback.format_exc() if exc_info else "")
    reported.append(text)
    print("*** " + text, file=sys.stderr)
