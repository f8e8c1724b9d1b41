// The desk's keys (issue 24): in the queue j and k move a highlight through the tickets and
// Enter opens the highlighted one; on a ticket r goes to the answer and n to the note; ? lists
// the keys (the page's own <dialog id="keys">, in the page's language). No key acts while the
// agent types (an input, textarea, select or editable text) or holds Ctrl, Alt or Meta.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var list = document.getElementById("keys");
  var rows = Array.prototype.slice.call(document.querySelectorAll("table.queue tbody tr"));
  var at = -1;

  function typing(target) {
    if (!target || !target.tagName) {
      return false;
    }
    return target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName);
  }

  function linkOf(row) {
    return row.querySelector("a[href^='/desk/tickets/']");
  }

  function move(step) {
    if (!rows.length) {
      return false;
    }
    var next = at < 0 ? (step > 0 ? 0 : rows.length - 1) : at + step;
    next = Math.max(0, Math.min(rows.length - 1, next));
    if (at >= 0) {
      rows[at].classList.remove("current");
      rows[at].removeAttribute("aria-current");
    }
    at = next;
    rows[at].classList.add("current");
    rows[at].setAttribute("aria-current", "true");
    linkOf(rows[at]).focus();  // the focus ring and the row's highlight; scrolls it into view
    return true;
  }

  function focus(id) {
    var field = document.getElementById(id);
    if (!field) {
      return false;
    }
    field.focus();
    return true;
  }

  function open() {
    if (at < 0) {
      return false;
    }
    window.location.assign(linkOf(rows[at]).href);
    return true;
  }

  function help() {
    if (!list || typeof list.showModal !== "function") {
      return false;
    }
    if (list.open) {
      list.close();
    } else {
      list.showModal();
    }
    return true;
  }

  var actions = {
    j: function () { return move(1); },
    k: function () { return move(-1); },
    r: function () { return focus("reply-body"); },
    n: function () { return focus("note-body"); },
    "?": help,
  };

  document.querySelectorAll("[data-keys]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", help);
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.altKey || event.metaKey || event.defaultPrevented) {
      return;
    }
    if (typing(event.target) || (list && list.open && event.key !== "?")) {
      return;
    }
    var done = false;
    if (event.key === "Enter") {
      // On the highlighted ticket's own link the browser follows it; elsewhere (a button,
      // another link) Enter keeps its own meaning.
      var here = document.activeElement;
      var plain = !here || here === document.body || here.tagName === "TR";
      done = plain && open();
    } else if (Object.prototype.hasOwnProperty.call(actions, event.key)) {
      done = actions[event.key]();
    }
    if (done) {
      event.preventDefault();  // r and n: the letter is not typed into the field
    }
  });
});
