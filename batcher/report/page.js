/* batcher report page: lazy videos, state filter, text search, sweep grid layout.
   Plain ES5-style JavaScript, no dependencies, works from file://.
   Reads only the JSON block #batcher-data and the page's own elements; never builds
   HTML from strings (textContent and DOM nodes only). */
(function () {
  "use strict";
  var doc = document;
  var data = JSON.parse(doc.getElementById("batcher-data").textContent);
  var cards = Array.prototype.slice.call(doc.querySelectorAll("article.card"));
  var texts = cards.map(function (card) {
    var parts = card.querySelectorAll(".key, .prompt, .shots");
    return Array.prototype.map.call(parts, function (el) {
      return el.textContent;
    }).join("\n").toLowerCase();
  });

  /* Lazy players: each <video> waits in an inert <template> until its card nears the
     viewport; then it is put in the page and asked for its metadata (first frame). */
  function reveal(box) {
    var template = box.querySelector("template.player");
    if (!template) { return; }
    var player = doc.importNode(template.content, true);
    Array.prototype.forEach.call(player.querySelectorAll("video"), function (video) {
      video.preload = "metadata";
    });
    box.replaceChild(player, template);
  }
  var boxes = Array.prototype.slice.call(doc.querySelectorAll(".media[data-lazy]"));
  if ("IntersectionObserver" in window) {
    var observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (entry.isIntersecting) {
          reveal(entry.target);
          observer.unobserve(entry.target);
        }
      });
    }, { rootMargin: "400px 0px" });
    boxes.forEach(function (box) { observer.observe(box); });
  } else {
    boxes.forEach(reveal);
  }

  /* Filter: state checkboxes and a text search (every word must match). */
  var stateBoxes = Array.prototype.slice.call(doc.querySelectorAll("input[data-state-filter]"));
  var search = doc.getElementById("search");
  var shown = doc.getElementById("shown");
  var sections = Array.prototype.slice.call(doc.querySelectorAll("section.group"));
  var superseded = cards.map(function (card) { return !!card.closest("#history"); });
  var currentCount = superseded.filter(function (old) { return !old; }).length;
  function applyFilter() {
    var on = {};
    stateBoxes.forEach(function (box) { on[box.value] = box.checked; });
    var terms = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    var count = 0;
    cards.forEach(function (card, i) {
      var ok = on[card.getAttribute("data-state")] !== false && terms.every(function (t) {
        return texts[i].indexOf(t) !== -1;
      });
      card.hidden = !ok;
      if (ok && !superseded[i]) { count += 1; }
    });
    sections.forEach(function (section) {
      section.hidden = !section.querySelector("article.card:not([hidden])");
    });
    shown.textContent = count + " of " + currentCount + " jobs shown";
  }
  stateBoxes.forEach(function (box) { box.addEventListener("change", applyFilter); });
  search.addEventListener("input", applyFilter);

  /* Sweep grids: rebuild a group's table when its row/column field changes. */
  function el(tag, cls, text) {
    var node = doc.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }
  function corner(rows, cols) {
    return (rows || "") + (rows && cols ? " \u2193 \u00d7 " : "") + (cols ? cols + " \u2192" : "");
  }
  function build(group, rows, cols) {
    var labels = {};
    group.axes.forEach(function (axis) { labels[axis.field] = axis.labels; });
    var rowLabels = rows ? labels[rows] : [null];
    var colLabels = cols ? labels[cols] : [null];
    var table = el("table", "grid");
    var head = el("tr");
    head.appendChild(el("th", "corner", corner(rows, cols)));
    colLabels.forEach(function (label) { head.appendChild(el("th", "col", label)); });
    table.appendChild(el("thead")).appendChild(head);
    var body = table.appendChild(el("tbody"));
    var cells = {};
    rowLabels.forEach(function (rowLabel) {
      var tr = body.appendChild(el("tr"));
      tr.appendChild(el("th", "row", rowLabel));
      colLabels.forEach(function (colLabel) {
        var cell = el("div", "cell");
        tr.appendChild(el("td")).appendChild(cell);
        cells[JSON.stringify([rowLabel, colLabel])] = cell;
      });
    });
    group.cards.forEach(function (entry) {
      var at = JSON.stringify([rows ? entry.v[rows] : null, cols ? entry.v[cols] : null]);
      cells[at].appendChild(doc.getElementById(entry.id));
    });
    var wrap = doc.getElementById(group.id).querySelector(".grid-wrap");
    wrap.replaceChildren(table);
  }
  data.groups.forEach(function (group) {
    var section = doc.getElementById(group.id);
    var rowSel = section.querySelector("select[data-axis=rows]");
    var colSel = section.querySelector("select[data-axis=cols]");
    var last = { rows: rowSel.value, cols: colSel.value };
    function change(event) {
      var mine = event.target === rowSel ? rowSel : colSel;
      var other = mine === rowSel ? colSel : rowSel;
      if (mine.value && mine.value === other.value) {
        other.value = last[mine === rowSel ? "rows" : "cols"];  /* swap the two fields */
      }
      last = { rows: rowSel.value, cols: colSel.value };
      build(group, rowSel.value || null, colSel.value || null);
    }
    rowSel.addEventListener("change", change);
    colSel.addEventListener("change", change);
  });

  applyFilter();
}());
