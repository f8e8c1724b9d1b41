// Files for a form's file input (SPEC 8.3, 9; issue 24), with JavaScript: an image pasted into
// the form (a screenshot from the clipboard) or files dropped on it join the files chosen with
// the picker; each shows as a thumbnail (images) or its name, with a button that takes it out
// again before sending. The input itself is what the form sends, so the server checks the
// files as always. Texts and limits come from the input's data-* attributes (the page's
// language); names are set as text, never parsed as HTML. Without JavaScript, or without
// DataTransfer, the picker works as it always did.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  try {
    new DataTransfer();
  } catch (e) {
    return;
  }
  document.querySelectorAll("input[type=file][data-attach]").forEach(attach);
});

function attach(input) {
  var form = input.form;
  if (!form) {
    return;
  }
  var texts = input.dataset;
  var maxFiles = parseInt(texts.maxFiles, 10) || 0;
  var maxBytes = parseInt(texts.maxBytes, 10) || 0;
  var SHOWN = ["image/png", "image/jpeg", "image/gif", "image/webp"];
  var files = Array.prototype.slice.call(input.files);
  var pasted = 0;

  var hint = document.createElement("p");
  hint.className = "hint";
  hint.textContent = texts.hint || "";
  var refusal = document.createElement("p");
  refusal.className = "attach-refused";
  refusal.setAttribute("role", "status");
  var list = document.createElement("ul");
  list.className = "thumbs";
  input.insertAdjacentElement("afterend", refusal);
  input.insertAdjacentElement("afterend", list);
  input.insertAdjacentElement("afterend", hint);

  function total() {
    return files.reduce(function (sum, f) { return sum + f.size; }, 0);
  }

  function sync() {
    var box = new DataTransfer();
    files.forEach(function (f) { box.items.add(f); });
    input.files = box.files;
    list.replaceChildren();
    files.forEach(function (f, index) { list.appendChild(thumb(f, index)); });
  }

  function thumb(file, index) {
    var item = document.createElement("li");
    if (SHOWN.indexOf(file.type) >= 0) {
      // A data: URL, not an object URL: the pages' CSP allows img-src 'self' data: only.
      var img = document.createElement("img");
      img.alt = file.name;
      var reader = new FileReader();
      reader.addEventListener("load", function () { img.src = reader.result; });
      reader.readAsDataURL(file);
      item.appendChild(img);
    }
    var name = document.createElement("span");
    name.textContent = file.name;
    item.appendChild(name);
    var remove = document.createElement("button");
    remove.type = "button";
    remove.className = "secondary";
    remove.textContent = texts.remove || "×";
    remove.setAttribute("aria-label", (texts.remove || "×") + ": " + file.name);
    remove.addEventListener("click", function () {
      files.splice(index, 1);
      refusal.textContent = "";
      sync();
      input.focus();
    });
    item.appendChild(remove);
    return item;
  }

  function add(more) {
    var refused = "";
    more.forEach(function (f) {
      if (maxFiles && files.length >= maxFiles) {
        refused = texts.tooMany || "";
      } else if (maxBytes && total() + f.size > maxBytes) {
        refused = texts.tooBig || "";
      } else {
        files.push(f);
      }
    });
    refusal.textContent = refused;
    sync();
  }

  function named(file) {
    pasted += 1;
    var ending = (file.type.split("/")[1] || "png").replace("jpeg", "jpg");
    var name = (texts.pasted || "screenshot") + "-" + pasted + "." + ending;
    return new File([file], name, { type: file.type, lastModified: Date.now() });
  }

  // The picker replaces the input's files: what was there before is kept, the choice added.
  input.addEventListener("change", function () {
    var chosen = Array.prototype.slice.call(input.files);
    add(chosen.filter(function (f) { return files.indexOf(f) < 0; }));
  });

  // A paste with image files and no text (a screenshot); text pastes are left alone.
  form.addEventListener("paste", function (event) {
    var data = event.clipboardData;
    if (!data || Array.prototype.indexOf.call(data.types, "text/plain") >= 0) {
      return;
    }
    var images = Array.prototype.filter.call(data.files, function (f) {
      return f.type.indexOf("image/") === 0;
    });
    if (images.length === 0) {
      return;
    }
    event.preventDefault();
    add(images.map(named));
  });

  function carriesFiles(event) {
    var types = event.dataTransfer ? event.dataTransfer.types : [];
    return Array.prototype.indexOf.call(types, "Files") >= 0;
  }
  form.addEventListener("dragover", function (event) {
    if (carriesFiles(event)) {
      event.preventDefault();
      form.classList.add("dropping");
    }
  });
  form.addEventListener("dragleave", function () {
    form.classList.remove("dropping");
  });
  form.addEventListener("drop", function (event) {
    form.classList.remove("dropping");
    if (!carriesFiles(event)) {
      return;
    }
    event.preventDefault();
    add(Array.prototype.slice.call(event.dataTransfer.files));
  });

  if (files.length) {
    sync();
  }
}
