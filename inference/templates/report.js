"use strict";
// unspin's view of score and match records (inference/report.py). Every element is built with the DOM API and
// every text goes in as a text node: whatever an article holds is shown, never parsed as HTML or run.
(function () {
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  const fmt = (v, digits) => (v === null || v === undefined ? "-" : Number(v).toFixed(digits === undefined ? 3 : digits));
  const clamp01 = (v) => Math.max(0, Math.min(1, Number(v) || 0));
  // Highlight intensity follows the score.
  const heat = (score) => `rgba(220, 38, 38, ${(0.12 + 0.78 * clamp01(score)).toFixed(3)})`;

  // Record offsets count code points (Python); JS strings index UTF-16 units.
  function offsets(text) {
    if (!/[\uD800-\uDFFF]/.test(text)) return { at: (i) => i, length: text.length };
    const units = [0];
    let u = 0;
    for (const ch of text) { u += ch.length; units.push(u); }
    return { at: (i) => units[Math.max(0, Math.min(i, units.length - 1))], length: units.length - 1 };
  }

  // text[a, b) into `into`, `marks` ({start, end, make(slice)}, sorted by start) drawn by their `make`.
  function fill(into, text, off, a, b, marks) {
    let pos = a;
    for (const m of marks) {
      const s = Math.max(m.start, a), e = Math.min(m.end, b);
      if (s < pos || e < s || (e === s && (m.start < a || m.start > b))) continue;
      if (s > pos) into.append(text.slice(off.at(pos), off.at(s)));
      into.append(m.make(text.slice(off.at(s), off.at(e))));
      pos = e;
    }
    if (b > pos) into.append(text.slice(off.at(pos), off.at(b)));
  }

  function header(card, id, label, score) {
    const head = el("header");
    head.append(el("h2", null, id));
    head.append(el("span", "badge " + (label || "error"), label ? `${label}${score === undefined ? "" : " " + fmt(score)}` : "error"));
    card.append(head);
    return head;
  }

  function spanMark(sp) {
    return (slice) => {
      const hit = el("span", "hit");
      const mark = el("mark", "span", slice);
      mark.style.setProperty("background-color", heat(sp.score));
      mark.title = `probably swapped (${fmt(sp.score)})` + (sp.suggestion ? `: was "${sp.suggestion}"` : "");
      mark.dataset.score = sp.score;
      hit.append(mark);
      if (sp.suggestion) hit.append(el("span", "sugg", "\u2192 " + sp.suggestion));
      return hit;
    };
  }

  function bar(score) {
    const b = el("div", "bar"), track = el("span", "track"), f = el("span", "fill");
    if (score === null) return b;
    f.style.setProperty("width", `${(100 * clamp01(score)).toFixed(1)}%`);
    f.style.setProperty("background-color", heat(score));
    track.append(f);
    b.append(track, el("span", null, fmt(score, 2)));
    b.title = `sentence score ${fmt(score)}`;
    return b;
  }

  function row(doc, cls, score, text, off, a, b, marks) {
    const r = el("div", cls), body = el("div", "sent");
    fill(body, text, off, a, b, marks);
    r.append(bar(score), body);
    doc.append(r);
  }

  // A score record over its text: one row per sentence with its score bar; text between sentences that is not
  // prose (menus, bylines) in grey without a bar; blank lines kept as paragraph breaks.
  function scoreArticle(rec, text, extra) {
    const card = el("article", "card");
    const head = header(card, rec.id, rec.label, rec.error ? undefined : rec.score);
    const model = rec.model || {};
    head.append(el("span", "meta", `model ${model.name} v${model.version} \u00b7 threshold ${fmt(rec.threshold)}` +
                                   ` \u00b7 ${(rec.spans || []).length} flagged spans` + (extra ? ` \u00b7 ${extra}` : "")));
    if (rec.error) card.append(el("p", "error", "error: " + rec.error));
    if (typeof text !== "string" || rec.error) return card;
    const off = offsets(text), doc = el("div", "doc");
    const marks = (rec.spans || []).slice().sort((x, y) => x.start - y.start)
      .map((sp) => ({ start: sp.start, end: sp.end, make: spanMark(sp) }));
    const gap = (a, b) => {  // white space is BMP: its code points are its UTF-16 units
      const t = text.slice(off.at(a), off.at(b)), lead = t.length - t.trimStart().length;
      const trail = t.length - t.trimEnd().length, body = t.trim();
      if (t.slice(0, lead).includes("\n")) doc.append(el("div", "para"));
      if (!body) return;
      row(doc, "row other", null, text, off, a + lead, b - trail, marks);
      if (t.slice(t.length - trail).includes("\n")) doc.append(el("div", "para"));
    };
    let pos = 0;
    for (const s of (rec.sentences || []).slice().sort((x, y) => x.start - y.start)) {
      if (s.start > pos) gap(pos, s.start);
      row(doc, "row", s.score, text, off, Math.max(s.start, pos), s.end, marks);
      pos = Math.max(pos, s.end);
    }
    if (off.length > pos) gap(pos, off.length);
    card.append(doc);
    return card;
  }

  function editMarks(pair, side) {
    const out = [];
    for (const [list, cls] of [[pair.substitutions || [], "sub"], [pair.other_edits || [], "edit"]]) {
      for (const e of list) {
        const start = side === "input" ? e.input_start : e.original_start;
        const end = side === "input" ? e.input_end : e.original_end;
        const other = side === "input" ? e.original : e.spun;
        out.push({ start, end, make: (slice) => {
          const m = el("mark", `${cls} ${side === "input" ? "spun" : "original"}`, slice || "\u2038");
          m.title = side === "input" ? `was: "${other}"` : `became: "${other}"`;
          return m;
        } });
      }
    }
    return out.sort((x, y) => x.start - y.start);
  }

  // A match record: figures of the best candidate, then its aligned sentences side by side with the swaps
  // highlighted in both texts.
  function matchArticle(rec, text, reference) {
    const card = el("article", "card");
    const head = header(card, rec.id, rec.relation);
    if (rec.source !== null && rec.source !== undefined) head.append(el("span", "meta", "source: " + rec.source));
    if (rec.error) { card.append(el("p", "error", "error: " + rec.error)); return card; }
    const best = (rec.candidates || [])[0];
    if (!best) { card.append(el("p", "meta", "no candidate in the index")); return card; }
    const figures = el("div", "figures");
    for (const [group, values] of [["", best.similarity || {}], ["retrieval ", best.retrieval || {}]]) {
      for (const [k, v] of Object.entries(values)) {
        if (typeof v === "number") figures.append(el("span", null, `${group}${k}: ${Number.isInteger(v) ? v : fmt(v)}`));
      }
    }
    card.append(figures);
    if (typeof text !== "string" || !reference) return card;
    const inOff = offsets(text), refOff = offsets(reference.text);
    const doc = el("div", "doc");
    const top = el("div", "pair head");
    top.append(el("span", null, "pair"), el("span", null, "input"),
               el("span", null, `reference ${best.reference}` + (reference.title ? ` \u2014 ${reference.title}` : "")));
    doc.append(top);
    for (const p of best.alignment || []) {
      const r = el("div", "pair " + p.kind), left = el("div", "sent input"), right = el("div", "sent reference");
      fill(left, text, inOff, p.input_start, p.input_end, editMarks(p, "input"));
      fill(right, reference.text, refOff, p.reference_start, p.reference_end, editMarks(p, "reference"));
      r.append(el("span", "meta", `${p.kind} ${fmt(p.similarity, 2)}`), left, right);
      doc.append(r);
    }
    card.append(doc);
    return card;
  }

  function draw(kind, item) {
    if (kind === "match") return matchArticle(item.record, item.text, item.reference);
    return scoreArticle(item.record, item.text, item.note);
  }

  // The overview table (sorted by any column, filtered by label or relation, paged) and, below it, the articles
  // of its current page. An article's JSON is parsed only when its page is shown.
  function report(index) {
    const cols = index.columns, filterAt = cols.findIndex((c) => c.key === index.filter);
    const rows = index.rows.map((cells, i) => ({ i, cells }));
    const state = { sort: -1, dir: 1, filter: "", page: 0 };
    const overview = document.getElementById("overview"), articles = document.getElementById("articles");
    const controls = el("div", "controls"), select = el("select"), prev = el("button", null, "\u2190 previous"),
      next = el("button", null, "next \u2192"), where = el("span", "meta");
    select.append(new Option(`every ${index.filter}`, ""));
    for (const v of [...new Set(rows.map((r) => r.cells[filterAt]))].sort()) select.append(new Option(String(v), String(v)));
    select.setAttribute("aria-label", "filter by " + index.filter);
    controls.append(select, prev, next, where);
    const table = el("table", "overview"), thead = el("thead"), tbody = el("tbody"), hr = el("tr");
    cols.forEach((c, k) => {
      const th = el("th"), b = el("button", null, c.label);
      b.addEventListener("click", () => { state.dir = state.sort === k ? -state.dir : (c.type === "number" ? -1 : 1); state.sort = k; state.page = 0; render(); });
      th.append(b);
      hr.append(th);
    });
    thead.append(hr);
    table.append(thead, tbody);
    overview.append(controls, table);
    select.addEventListener("change", () => { state.filter = select.value; state.page = 0; render(); });
    prev.addEventListener("click", () => { state.page -= 1; render(); });
    next.addEventListener("click", () => { state.page += 1; render(); });

    function compare(a, b) {
      const x = a.cells[state.sort], y = b.cells[state.sort];
      if (x === y) return a.i - b.i;
      if (x === null || x === undefined) return 1;  // empty cells last, either way
      if (y === null || y === undefined) return -1;
      return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y))) * state.dir;
    }

    function render() {
      let view = state.filter ? rows.filter((r) => String(r.cells[filterAt]) === state.filter) : rows.slice();
      if (state.sort >= 0) view.sort(compare);
      const pages = Math.max(1, Math.ceil(view.length / index.page_size));
      state.page = Math.max(0, Math.min(state.page, pages - 1));
      const shown = view.slice(state.page * index.page_size, (state.page + 1) * index.page_size);
      where.textContent = `page ${state.page + 1} of ${pages} \u00b7 ${view.length} of ${rows.length} articles`;
      prev.disabled = state.page === 0;
      next.disabled = state.page >= pages - 1;
      hr.querySelectorAll("th").forEach((th, k) => th.setAttribute("aria-sort", k !== state.sort ? "none" : state.dir > 0 ? "ascending" : "descending"));
      tbody.replaceChildren(...shown.map((r) => {
        const tr = el("tr");
        r.cells.forEach((v, k) => {
          const td = el("td", cols[k].type);
          if (k === 0) {
            const a = el("a", null, v);
            a.href = "#article-" + r.i;  // only ever a number of ours
            td.append(a);
          } else td.textContent = v === null || v === undefined ? "" : (typeof v === "number" && !Number.isInteger(v) ? fmt(v) : String(v));
          tr.append(td);
        });
        return tr;
      }));
      articles.replaceChildren(...shown.map((r) => {
        const card = draw(index.kind, JSON.parse(document.getElementById("unspin-item-" + r.i).textContent));
        card.id = "article-" + r.i;
        return card;
      }));
    }
    render();
  }

  // The service page: the text goes to POST /v1/score (with the API key the user types, in the header the
  // service names); the answer is drawn as in a report.
  function page(form) {
    const status = document.getElementById("unspin-status"), out = document.getElementById("articles");
    const header = form.dataset.keyHeader;
    form.elements.file.addEventListener("change", () => {
      const f = form.elements.file.files[0];
      if (!f) return;
      f.text().then((t) => { form.elements.text.value = t; if (form.elements.id.value === "pasted") form.elements.id.value = f.name; });
    });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const text = form.elements.text.value, headers = { "Content-Type": "application/json" };
      if (header) headers[header] = form.elements.key.value;
      status.textContent = "checking\u2026";
      out.replaceChildren();
      try {
        const resp = await fetch("v1/score", { method: "POST", headers, body: JSON.stringify({ id: form.elements.id.value, text }) });
        const body = await resp.json().catch(() => ({ detail: resp.statusText }));
        if (!resp.ok) { status.textContent = ""; out.append(el("p", "error", `${resp.status}: ${body.detail}`)); return; }
        status.textContent = "";
        out.append(scoreArticle(body, text));
      } catch (e) {
        status.textContent = "";
        out.append(el("p", "error", "could not reach the service: " + e));
      }
    });
  }

  const data = document.getElementById("unspin-index"), form = document.getElementById("unspin-form");
  if (data) report(JSON.parse(data.textContent));
  if (form) page(form);
})();
