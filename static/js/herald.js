/* Herald dashboard behaviour. The Content-Security-Policy forbids inline scripts, so
 * everything the pages need lives here. All handlers are delegated from `document`, so
 * they keep working for content swapped in by htmx (hx-boost navigation, partials, SSE).
 *
 *   <button data-copy-target="#secret">Copy</button>      copy textContent / value
 *   <button data-reveal-target="#secret">Reveal</button>  toggle [hidden] (Reveal/Hide)
 *   <form data-confirm="Delete it?"> / <button data-confirm="...">   confirm() first
 *   <time class="relative" datetime="2026-11-23T10:30:00Z">…</time>  "3 minutes ago"
 *   <meta name="csrf-token" content="…">                  X-CSRFToken on htmx requests
 */
(function () {
  "use strict";

  var FEEDBACK_MS = 1500;
  var REFRESH_MS = 30000;

  function $(selector) {
    if (!selector) return null;
    try { return document.querySelector(selector); } catch (e) { return null; }
  }

  // Swap a button's label, keeping the server-rendered one to restore later.
  function setLabel(button, text) {
    var label = button.querySelector(".btn-label") || button;
    label.textContent = text;
  }

  function flashLabel(button, text) {
    if (!button.hasAttribute("data-label")) {
      var label = button.querySelector(".btn-label") || button;
      button.setAttribute("data-label", label.textContent);
    }
    setLabel(button, text);
    button.classList.add("is-copied");
    clearTimeout(button._heraldTimer);
    button._heraldTimer = setTimeout(function () {
      setLabel(button, button.getAttribute("data-label"));
      button.classList.remove("is-copied");
    }, FEEDBACK_MS);
  }

  /* (a) Copy to clipboard ------------------------------------------------ */
  function textOf(el) {
    var tag = el.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return el.value;
    return (el.textContent || "").trim();
  }

  function legacyCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "sr-only";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy failed"));
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return legacyCopy(text); });
    }
    return legacyCopy(text);
  }

  function onCopy(button) {
    var target = $(button.getAttribute("data-copy-target"));
    if (!target) return;
    copyText(textOf(target)).then(
      function () { flashLabel(button, "Copied"); },
      function () { flashLabel(button, "Copy failed"); }
    );
  }

  /* (b) Reveal / hide ---------------------------------------------------- */
  // Default: toggles the target's `hidden` attribute. With data-reveal-class="name" it
  // toggles that class instead (class present = concealed).
  function isConcealed(target, cls) {
    return cls ? target.classList.contains(cls) : target.hasAttribute("hidden");
  }

  function syncReveal(button) {
    var target = $(button.getAttribute("data-reveal-target"));
    if (!target) return;
    var concealed = isConcealed(target, button.getAttribute("data-reveal-class"));
    setLabel(button, concealed
      ? (button.getAttribute("data-reveal-label") || "Reveal")
      : (button.getAttribute("data-hide-label") || "Hide"));
    button.setAttribute("aria-expanded", concealed ? "false" : "true");
    if (target.id) button.setAttribute("aria-controls", target.id);
  }

  function onReveal(button) {
    var target = $(button.getAttribute("data-reveal-target"));
    if (!target) return;
    var cls = button.getAttribute("data-reveal-class");
    if (cls) target.classList.toggle(cls);
    else if (target.hasAttribute("hidden")) target.removeAttribute("hidden");
    else target.setAttribute("hidden", "");
    syncReveal(button);
  }

  /* (c) Confirm dialogs for plain (and boosted) forms -------------------- */
  // Runs in the capture phase on `document`, i.e. before htmx's own submit listener on
  // boosted forms, so cancelling here stops both the native and the boosted submission.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var submitter = event.submitter;
    var message = (submitter && submitter.getAttribute("data-confirm")) ||
      (form && form.getAttribute && form.getAttribute("data-confirm"));
    if (message && !window.confirm(message)) {
      event.preventDefault();
      event.stopPropagation();
    }
  }, true);

  document.addEventListener("click", function (event) {
    var el = event.target.closest ? event.target.closest("[data-confirm]") : null;
    if (!el) return;
    // Submit buttons are handled by the submit listener above (once, with the submitter).
    var isSubmit = (el.tagName === "BUTTON" && (el.type || "submit") === "submit" && el.form) ||
      (el.tagName === "INPUT" && el.type === "submit") || el.tagName === "FORM";
    if (isSubmit) return;
    if (!window.confirm(el.getAttribute("data-confirm"))) {
      event.preventDefault();
      event.stopPropagation();
    }
  }, true);

  /* Delegated clicks: copy & reveal -------------------------------------- */
  document.addEventListener("click", function (event) {
    if (!event.target.closest) return;
    var copy = event.target.closest("[data-copy-target]");
    if (copy) { event.preventDefault(); onCopy(copy); return; }
    var reveal = event.target.closest("[data-reveal-target]");
    if (reveal) { event.preventDefault(); onReveal(reveal); }
  });

  /* (d) Relative times --------------------------------------------------- */
  var UNITS = [
    ["year", 31536000], ["month", 2592000], ["week", 604800],
    ["day", 86400], ["hour", 3600], ["minute", 60]
  ];
  var rtf = (window.Intl && Intl.RelativeTimeFormat)
    ? new Intl.RelativeTimeFormat("en", { numeric: "always" }) : null;

  function parseDate(value) {
    if (!value) return null;
    // Herald stores UTC; treat a date-time without an offset as UTC, not local time.
    if (/T\d\d:\d\d/.test(value) && !/(Z|[+-]\d\d:?\d\d)$/i.test(value)) value += "Z";
    var date = new Date(value);
    return isNaN(date.getTime()) ? null : date;
  }

  function relativeText(date, now) {
    var seconds = Math.round((date.getTime() - now) / 1000);
    var abs = Math.abs(seconds);
    if (abs < 45) return seconds <= 0 ? "just now" : "in a few seconds";
    for (var i = 0; i < UNITS.length; i++) {
      var unit = UNITS[i][0], size = UNITS[i][1];
      if (abs >= size || unit === "minute") {
        var n = Math.max(1, Math.round(abs / size));
        if (rtf) return rtf.format(seconds < 0 ? -n : n, unit);
        var word = n + " " + unit + (n === 1 ? "" : "s");
        return seconds < 0 ? word + " ago" : "in " + word;
      }
    }
    return "";
  }

  function utcTitle(date) {
    return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function formatTimes(root) {
    var scope = root && root.querySelectorAll ? root : document;
    var nodes = Array.prototype.slice.call(scope.querySelectorAll("time.relative[datetime]"));
    if (scope.matches && scope.matches("time.relative[datetime]")) nodes.push(scope);
    var now = Date.now();
    nodes.forEach(function (el) {
      var date = parseDate(el.getAttribute("datetime"));
      if (!date) return;
      var text = relativeText(date, now);
      if (el.textContent !== text) el.textContent = text;
      el.setAttribute("title", utcTitle(date));
    });
  }

  /* Initialise new content (first load, boosted navigation, swaps) -------- */
  function init(root) {
    formatTimes(root);
    var scope = root && root.querySelectorAll ? root : document;
    Array.prototype.forEach.call(scope.querySelectorAll("[data-reveal-target]"), syncReveal);
  }

  document.addEventListener("htmx:load", function (e) { init(e.target); });
  document.addEventListener("htmx:afterSwap", function (e) { formatTimes(e.target); });
  document.addEventListener("htmx:historyRestore", function () { init(document); });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { init(document); });
  } else {
    init(document);
  }
  setInterval(function () { formatTimes(document); }, REFRESH_MS);

  /* (e) CSRF header on every htmx request -------------------------------- */
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta && meta.content) event.detail.headers["X-CSRFToken"] = meta.content;
  });

  /* Top progress bar while a boosted page navigation is in flight --------- */
  var root = document.documentElement;
  function navDone() { root.classList.remove("is-navigating"); }
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (event.detail && event.detail.boosted) root.classList.add("is-navigating");
  });
  ["htmx:afterRequest", "htmx:afterSwap", "htmx:historyRestore", "htmx:sendError",
    "htmx:timeout", "htmx:sendAbort"].forEach(function (name) {
    document.addEventListener(name, navDone);
  });
})();

/* Event checkboxes: "All events" ticks every type; unticking one type unticks "All". */
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box || box.type !== "checkbox" || !box.form) return;
    var all = box.form.querySelector("[data-check-all]");
    if (!all) return;
    var group = document.querySelector(all.getAttribute("data-check-all"));
    if (!group) return;
    if (box === all) {
      Array.prototype.forEach.call(group.querySelectorAll("input[type=checkbox]"), function (b) {
        b.checked = all.checked;
      });
    } else if (group.contains(box) && !box.checked) {
      all.checked = false;
    }
  });

  /* Live log indicator: grey while the event stream is down (EventSource retries itself). */
  function indicator(on) {
    var el = document.getElementById("live-indicator");
    if (el) el.classList.toggle("is-off", !on);
  }
  document.addEventListener("htmx:sseOpen", function () { indicator(true); });
  document.addEventListener("htmx:sseError", function () { indicator(false); });
})();

/* Live log: the stream replays a few seconds from before the page was read, and a reconnect
 * may repeat rows, so a row already on the page is not added twice. */
document.addEventListener("htmx:sseBeforeMessage", function (event) {
  "use strict";
  var data = event.detail && event.detail.data;
  var match = typeof data === "string" ? /^<tr id="([^"]+)"/.exec(data) : null;
  if (match && document.getElementById(match[1])) event.preventDefault();
});
