// flowsiem report: draws each figure when it scrolls into view (all of them before printing),
// and makes tables sortable (click a header) and filterable (type in the box above).
(function () {
  "use strict";
  const FIGS = JSON.parse(document.getElementById("fs-figures").textContent);
  const CONFIG = { responsive: true, displaylogo: false };

  function draw(el) {
    if (el.dataset.drawn) return Promise.resolve(el);
    el.dataset.drawn = "1";
    const f = FIGS[el.dataset.fig];
    return Plotly.newPlot(el, f.data, f.layout, CONFIG);
  }
  window.flowsiemDrawAll = function () {
    return Promise.all(Array.from(document.querySelectorAll(".fig")).map(draw));
  };
  if ("IntersectionObserver" in window) {
    const io = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) {
        if (e.isIntersecting) { io.unobserve(e.target); draw(e.target); }
      });
    }, { rootMargin: "600px" });
    document.querySelectorAll(".fig").forEach(function (el) { io.observe(el); });
  } else {
    window.flowsiemDrawAll();
  }
  window.addEventListener("beforeprint", function () { window.flowsiemDrawAll(); });

  function cellValue(row, i) {
    const td = row.children[i];
    const v = td ? (td.dataset.sort !== undefined ? td.dataset.sort : td.textContent.trim()) : "";
    const n = Number(v.replace(/,/g, ""));
    return v !== "" && !isNaN(n) ? n : v.toLowerCase();
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    const body = table.tBodies[0];
    table.querySelectorAll("th").forEach(function (th, i) {
      th.addEventListener("click", function () {
        const asc = !th.classList.contains("sorted-asc");
        table.querySelectorAll("th").forEach(function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
        th.classList.add(asc ? "sorted-asc" : "sorted-desc");
        const rows = Array.from(body.rows);
        rows.sort(function (a, b) {
          const x = cellValue(a, i), y = cellValue(b, i);
          return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.querySelectorAll("input.filter").forEach(function (input) {
    const table = document.getElementById(input.dataset.table);
    input.addEventListener("input", function () {
      const q = input.value.toLowerCase();
      Array.from(table.tBodies[0].rows).forEach(function (r) {
        r.style.display = r.textContent.toLowerCase().indexOf(q) >= 0 ? "" : "none";
      });
    });
  });
})();
