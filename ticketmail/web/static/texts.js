// The desk's text modules (SPEC 9.1), with JavaScript: choosing one puts it, filled in, into
// the answer at the cursor (at the end while no cursor was placed), keeping what is typed.
// The filled text comes from the page's own no-JavaScript way, GET ?text=, read as a document
// that is parsed and never run; if that fails, the form is sent the plain way.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var form = document.querySelector("form.texts");
  var answer = document.getElementById("reply-body");
  if (!form || !answer) {
    return;
  }
  var placed = false;
  ["click", "keyup", "select"].forEach(function (name) {
    answer.addEventListener(name, function () { placed = true; });
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var query = new URLSearchParams(new FormData(form)).toString();
    var url = form.action.split("#")[0] + "?" + query;
    fetch(url, { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var filled = page.getElementById("reply-body");
        if (!filled || !filled.value) {
          throw new Error("no text module");
        }
        var text = filled.value;
        if (!placed) {
          var before = answer.value;
          var gap = before && !before.endsWith("\n") ? "\n" : "";
          answer.setRangeText(gap + text, before.length, before.length, "end");
        } else {
          answer.setRangeText(text, answer.selectionStart, answer.selectionEnd, "end");
        }
        answer.focus();
        placed = true;
      })
      .catch(function () {
        form.submit();
      });
  });
});
