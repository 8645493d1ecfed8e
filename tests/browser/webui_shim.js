// TEST ONLY: the few pieces of the WebUI's page scripts that javascript/latentfix.js and the InputAccordion
// rely on, written after AUTOMATIC1111 1.10 (script.js, javascript/inputAccordion.js, javascript/hints.js),
// reduced to what the browser test exercises. Injected before the extension's JS, as the WebUI does.

// --- script.js: gradioApp, the UI callbacks, updateInput ---------------------------------------------------
function gradioApp() {
    const elems = document.getElementsByTagName('gradio-app');
    const elem = elems.length == 0 ? document : elems[0];
    if (elem !== document) {
        elem.getElementById = function(id) {
            return document.getElementById(id);
        };
    }
    return elem.shadowRoot ? elem.shadowRoot : elem;
}

var uiUpdateCallbacks = [];
var uiAfterUpdateCallbacks = [];
var uiLoadedCallbacks = [];
var uiAfterUpdateTimeout = null;
var executedOnLoaded = false;

function onUiUpdate(callback) {
    uiUpdateCallbacks.push(callback);
}
function onAfterUiUpdate(callback) {
    uiAfterUpdateCallbacks.push(callback);
}
function onUiLoaded(callback) {
    uiLoadedCallbacks.push(callback);
}

function executeCallbacks(queue, arg) {
    for (const callback of queue) {
        try {
            callback(arg);
        } catch (e) {
            console.error("error running callback", callback, ":", e);
        }
    }
}

function updateInput(target) {
    let e = new Event("input", {bubbles: true});
    Object.defineProperty(e, "target", {value: target});
    target.dispatchEvent(e);
}

document.addEventListener("DOMContentLoaded", function() {
    var mutationObserver = new MutationObserver(function(m) {
        if (!executedOnLoaded && gradioApp().querySelector('#txt2img_prompt')) {
            executedOnLoaded = true;
            executeCallbacks(uiLoadedCallbacks);
        }
        executeCallbacks(uiUpdateCallbacks, m);
        clearTimeout(uiAfterUpdateTimeout);
        uiAfterUpdateTimeout = setTimeout(function() {
            executeCallbacks(uiAfterUpdateCallbacks);
        }, 200);
    });
    mutationObserver.observe(gradioApp(), {childList: true, subtree: true});
});

// --- inputAccordion.js: the accordion's open state drives the hidden `<id>-checkbox` (the script's value) ---
function setupAccordion(accordion) {
    var labelWrap = accordion.querySelector('.label-wrap');
    var gradioCheckbox = gradioApp().querySelector('#' + accordion.id + "-checkbox input");
    var span = labelWrap.querySelector('span');
    var isOpen = function() {
        return labelWrap.classList.contains('open');
    };
    var visibleCheckbox = document.createElement('INPUT');
    visibleCheckbox.type = 'checkbox';
    visibleCheckbox.checked = isOpen();
    visibleCheckbox.id = accordion.id + "-visible-checkbox";
    visibleCheckbox.className = gradioCheckbox.className + " input-accordion-checkbox";  // gradio's checkbox look
    span.insertBefore(visibleCheckbox, span.firstChild);

    var sync = function() {
        gradioCheckbox.checked = visibleCheckbox.checked;
        updateInput(gradioCheckbox);
    };
    new MutationObserver(function() {
        accordion.classList.toggle('input-accordion-open', isOpen());
        visibleCheckbox.checked = isOpen();
        sync();
    }).observe(labelWrap, {attributes: true, attributeFilter: ['class']});
    visibleCheckbox.addEventListener('click', function(event) {
        event.stopPropagation();
    });
    visibleCheckbox.addEventListener('input', sync);
}

onUiLoaded(function() {
    for (var accordion of gradioApp().querySelectorAll('.input-accordion')) {
        setupAccordion(accordion);
    }
});

// --- hints.js: `titles` keyed by visible text, applied to new nodes that have no title yet ------------------
// Another extension's entries for labels that match ours exactly: our own hints must still win.
var titles = {
    "Center strength": "ANOTHER EXTENSION'S HINT",
    "Maximize channels": "ANOTHER EXTENSION'S HINT",
};

function updateTooltip(element) {
    if (element.title) return;
    let tooltip = titles[element.textContent] || (element.value && titles[element.value]);
    if (tooltip) {
        element.title = tooltip;
    }
}

const tooltipCheckNodes = new Set();
let tooltipCheckTimer = null;

onUiUpdate(function(mutationRecords) {
    for (const record of mutationRecords) {
        for (const node of record.addedNodes) {
            if (node.nodeType === Node.ELEMENT_NODE && !node.classList.contains("hide")) {
                if (!node.title && ["SPAN", "BUTTON", "P", "INPUT"].includes(node.tagName)) {
                    tooltipCheckNodes.add(node);
                }
                node.querySelectorAll('span, button, p').forEach(n => tooltipCheckNodes.add(n));
            }
        }
    }
    if (tooltipCheckNodes.size) {
        clearTimeout(tooltipCheckTimer);
        tooltipCheckTimer = setTimeout(function() {
            for (const node of tooltipCheckNodes) updateTooltip(node);
            tooltipCheckNodes.clear();
        }, 1000);
    }
});
