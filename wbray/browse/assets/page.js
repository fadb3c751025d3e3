// wbray run browser: renders the JSON embedded in #wb-data. Texts only ever go through
// textContent (never innerHTML), so responses holding markup show as text.
(function () {
  "use strict";

  // Large pages embed the data gzip+base64; the browser's own DecompressionStream inflates it.
  async function loadData() {
    const node = document.getElementById("wb-data");
    if (node.dataset.encoding !== "gzip-base64") return JSON.parse(node.textContent);
    const bin = atob(node.textContent.trim());
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  }

  loadData().then(start, (err) => {
    document.getElementById("app").textContent = "Could not read the embedded data: " + err;
    throw err;
  });

  function start(DATA) {
    if (DATA.schema !== 1) throw new Error("wbray browser: unsupported data schema " + DATA.schema);
    const MODELS = DATA.models;
    const QUERIES = DATA.queries; // [index, domain pos, domain2, lang, text, [req], [[name, desc]]]
    const DOMAINS = DATA.domains;
    const REQS = ["style", "format", "length"];
    const LANG_NAMES = { zh: "Chinese", en: "English" };

    // ---- indexes over the flat arrays, built once
    const key = (m, j) => m + ":" + j;
    const group = (rows) => {
      const out = new Map();
      for (const r of rows) {
        const k = key(r[0], r[1]);
        if (!out.has(k)) out.set(k, []);
        out.get(k).push(r);
      }
      return out;
    };
    const EV = group(DATA.ev);
    const GEN = group(DATA.gen);
    const FLAGS = group(DATA.flags);
    const posOf = new Map(QUERIES.map((q, j) => [q[0], j]));
    const failedQ = new Array(QUERIES.length).fill(false);
    const flaggedQ = new Array(QUERIES.length).fill(false);
    const flagCount = new Array(MODELS.length).fill(0);
    for (const r of DATA.ev) if (r[6] !== null) failedQ[r[1]] = true;
    for (const r of DATA.gen) if (r[4] !== null) failedQ[r[1]] = true;
    for (const r of DATA.flags) { flaggedQ[r[1]] = true; flagCount[r[0]] += 1; }

    // ---- DOM helpers
    function el(tag, attrs, ...kids) {
      const n = document.createElement(tag);
      for (const [k, v] of Object.entries(attrs || {})) {
        if (v === null || v === undefined || v === false) continue;
        if (k === "class") n.className = v;
        else n.setAttribute(k, v === true ? "" : String(v));
      }
      for (const kid of kids) {
        if (kid === null || kid === undefined || kid === false) continue;
        n.append(kid instanceof Node ? kid : String(kid));
      }
      return n;
    }
    const fmt = (v, digits) => (v === null || v === undefined ? "–" : v.toFixed(digits));
    const scoreColor = (s) => (s === null ? "" : "background:hsl(" + Math.round(((s - 1) / 9) * 120) + ",70%,90%)");

    // ---- routing: #/ (leaderboard), #/queries?filters, #/query/<index>?filters
    function parseHash() {
      const raw = location.hash.replace(/^#/, "") || "/";
      const cut = raw.indexOf("?");
      const path = cut < 0 ? raw : raw.slice(0, cut);
      const params = new URLSearchParams(cut < 0 ? "" : raw.slice(cut + 1));
      return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params };
    }
    const FILTER_KEYS = ["domain", "lang", "req", "failed", "flagged", "search"];
    function filterParams(params) {
      const p = new URLSearchParams();
      for (const k of FILTER_KEYS) if (params.get(k)) p.set(k, params.get(k));
      return p;
    }
    function href(parts, params) {
      const qs = params && params.toString() ? "?" + params.toString() : "";
      return "#/" + parts.map(encodeURIComponent).join("/") + qs;
    }
    const domainParams = (d) => new URLSearchParams({ domain: d });

    function crumbs(items) {
      const nav = document.getElementById("crumbs");
      nav.replaceChildren();
      items.forEach(([label, link], i) => {
        if (i) nav.append(el("span", { class: "sep" }, "›"));
        nav.append(link ? el("a", { href: link }, label) : el("span", {}, label));
      });
    }

    // ---- leaderboard
    function boardCell(v, link) {
      const [est, lo, hi, n] = v;
      const text = est === null ? "–" : fmt(est * 10, 1);
      const hw = lo !== null && hi !== null ? " ± " + fmt(((hi - lo) / 2) * 10, 1) : "";
      const body = link && est !== null ? el("a", { href: link }, text) : text;
      return el("td", { class: "num", title: n + " queries" }, body, hw ? el("small", {}, hw) : null);
    }
    function leaderboard() {
      crumbs([["Leaderboard", null]]);
      const head = el("tr", {}, el("th", {}, "Model"));
      DATA.groups.forEach(([scope, grp, label]) => {
        const link = scope === "domain1" ? href(["queries"], domainParams(grp)) : null;
        head.append(
          el("th", { class: "num" }, link ? el("a", { href: link, class: "domain-link", "data-domain": grp }, label) : label)
        );
      });
      head.append(el("th", { class: "num" }, "Queries"), el("th", { class: "num" }, "Failed"), el("th", { class: "num" }, "Flagged"));
      const body = el("tbody");
      const order = MODELS.map((_, m) => m).sort((a, b) => (DATA.board[b][0][0] ?? -1) - (DATA.board[a][0][0] ?? -1));
      for (const m of order) {
        const row = el("tr", { "data-model": MODELS[m] }, el("th", {}, MODELS[m]));
        DATA.groups.forEach(([scope, grp], g) => {
          const link = scope === "domain1" ? href(["queries"], domainParams(grp)) : null;
          row.append(boardCell(DATA.board[m][g], link));
        });
        const [failedEvals, failedQueries] = DATA.failures[m];
        const fParams = new URLSearchParams({ failed: "1" });
        const flParams = new URLSearchParams({ flagged: "1" });
        row.append(
          el("td", { class: "num" }, DATA.board[m][0][3]),
          el("td", { class: "num", title: failedEvals + " failed evaluations" },
            failedQueries ? el("a", { href: href(["queries"], fParams) }, failedQueries) : "0"),
          el("td", { class: "num" }, flagCount[m] ? el("a", { href: href(["queries"], flParams) }, flagCount[m]) : "0")
        );
        body.append(row);
      }
      const hasCi = DATA.board.some((r) => r.some((v) => v[1] !== null));
      return [
        el("h2", {}, "Leaderboard"),
        el("div", { class: "scroll" }, el("table", { id: "leaderboard" }, el("thead", {}, head), body)),
        el("p", { class: "note" },
          "Scores on the leaderboard's ×10 scale. " +
            (hasCi ? "± is half the width of the bootstrap confidence interval (queries resampled). " : "") +
            "Failed = queries with a failed evaluation or generation (failures are left out of the means). " +
            "Flagged = responses that look aimed at the judge."),
        el("p", {}, el("a", { href: href(["queries"]) , id: "all-queries" }, "Browse all " + QUERIES.length + " queries →")),
      ];
    }

    // ---- query list (the domain view is this list with a domain filter)
    function matches(j, params) {
      const q = QUERIES[j];
      if (params.get("domain") && DOMAINS[q[1]] !== params.get("domain")) return false;
      if (params.get("lang") && q[3] !== params.get("lang")) return false;
      if (params.get("req") && !q[5].includes(params.get("req"))) return false;
      if (params.get("failed") && !failedQ[j]) return false;
      if (params.get("flagged") && !flaggedQ[j]) return false;
      const s = (params.get("search") || "").toLowerCase();
      return !s || q[4].toLowerCase().includes(s) || String(q[0]) === s;
    }
    function select(id, label, options, value) {
      const s = el("select", { id });
      s.append(el("option", { value: "" }, "all"));
      for (const [v, text] of options) s.append(el("option", { value: v, selected: v === value }, text));
      return el("label", {}, label, s);
    }
    function filters(params, countText) {
      const box = el("div", { id: "filters" },
        select("f-domain", "Domain", DOMAINS.map((d) => [d, d]), params.get("domain") || ""),
        select("f-lang", "Language", Object.entries(LANG_NAMES), params.get("lang") || ""),
        select("f-req", "Requirement", REQS.map((r) => [r, r]), params.get("req") || ""),
        el("label", {}, el("input", { type: "checkbox", id: "f-failed", checked: !!params.get("failed") }), "failed only"),
        el("label", {}, el("input", { type: "checkbox", id: "f-flagged", checked: !!params.get("flagged") }), "flagged only"),
        el("label", {}, "Search", el("input", { type: "search", id: "f-search", value: params.get("search") || "", size: 18 })),
        el("span", { id: "count" }, countText)
      );
      box.addEventListener("change", () => {
        const p = new URLSearchParams();
        const val = (id) => document.getElementById(id).value;
        if (val("f-domain")) p.set("domain", val("f-domain"));
        if (val("f-lang")) p.set("lang", val("f-lang"));
        if (val("f-req")) p.set("req", val("f-req"));
        if (document.getElementById("f-failed").checked) p.set("failed", "1");
        if (document.getElementById("f-flagged").checked) p.set("flagged", "1");
        if (val("f-search")) p.set("search", val("f-search"));
        location.hash = href(["queries"], p);
      });
      return box;
    }
    function domainSummary(d) {
      const g = DATA.groups.findIndex(([scope, grp]) => scope === "domain1" && grp === d);
      if (g < 0) return null;
      const list = el("ul", { id: "domain-summary" });
      for (let m = 0; m < MODELS.length; m++) {
        const [est, lo, hi, n] = DATA.board[m][g];
        const hw = lo !== null && hi !== null ? " ± " + fmt(((hi - lo) / 2) * 10, 1) : "";
        list.append(el("li", {}, MODELS[m] + ": " + (est === null ? "–" : fmt(est * 10, 1) + hw) + " (" + n + " queries)"));
      }
      return list;
    }
    function queryList(params) {
      const d = params.get("domain");
      crumbs(d ? [["Leaderboard", "#/"], [d, null]] : [["Leaderboard", "#/"], ["Queries", null]]);
      const shown = [];
      for (let j = 0; j < QUERIES.length; j++) if (matches(j, params)) shown.push(j);
      const head = el("tr", {}, el("th", {}, "#"), el("th", {}, "Domain"), el("th", {}, "Lang"), el("th", {}, "Query"));
      for (const m of MODELS) head.append(el("th", { class: "num" }, m));
      const body = el("tbody");
      const keep = filterParams(params);
      for (const j of shown) {
        const q = QUERIES[j];
        const link = href(["query", String(q[0])], keep);
        const tags = el("div", {}, ...q[5].map((r) => el("span", { class: "tag" }, r)),
          failedQ[j] ? el("span", { class: "tag bad" }, "failed") : null,
          flaggedQ[j] ? el("span", { class: "tag warn" }, "flagged") : null);
        const row = el("tr", { "data-index": q[0] },
          el("td", { class: "num" }, el("a", { href: link, class: "query-link" }, q[0])),
          el("td", {}, DOMAINS[q[1]], el("br"), el("small", {}, q[2])),
          el("td", {}, q[3] || "–"),
          el("td", { class: "qtext" }, el("a", { href: link }, q[4].length > 140 ? q[4].slice(0, 140) + "…" : q[4]), tags));
        for (let m = 0; m < MODELS.length; m++) {
          const s = DATA.scores[m][j];
          const marks = (EV.get(key(m, j)) || []).some((r) => r[6] !== null) ? " ⚠" : "";
          const flag = FLAGS.has(key(m, j)) ? " ⚑" : "";
          row.append(el("td", { class: "num", style: scoreColor(s) }, fmt(s, 2) + marks + flag));
        }
        body.append(row);
      }
      const out = [el("h2", {}, d ? "Domain: " + d : "Queries")];
      if (d) out.push(domainSummary(d));
      out.push(filters(params, shown.length + " of " + QUERIES.length + " queries"));
      out.push(el("div", { class: "scroll" }, el("table", { id: "queries" }, el("thead", {}, head), body)));
      out.push(el("p", { class: "note" }, "Query scores are 1–10 (the mean of the query's successful evaluations). ⚠ a failed evaluation, ⚑ a flagged response."));
      return out;
    }

    // ---- one query: its text, criteria, and each model's response with every criterion's verdicts
    function queryView(index, params) {
      const j = posOf.get(Number(index));
      if (j === undefined) return [el("p", {}, "No query " + index + " in this run.")];
      const q = QUERIES[j];
      const keep = filterParams(params);
      const list = keep.toString() ? href(["queries"], keep) : href(["queries"], domainParams(DOMAINS[q[1]]));
      crumbs([["Leaderboard", "#/"], [DOMAINS[q[1]], href(["queries"], domainParams(DOMAINS[q[1]]))], ["Query " + q[0], null]]);
      const order = [];
      for (let k = 0; k < QUERIES.length; k++) if (matches(k, keep)) order.push(k);
      const at = order.indexOf(j);
      const pager = el("div", { class: "pager" },
        el("a", { href: list }, "↑ list"),
        at > 0 ? el("a", { href: href(["query", String(QUERIES[order[at - 1]][0])], keep), id: "prev" }, "← previous") : null,
        at >= 0 && at < order.length - 1 ? el("a", { href: href(["query", String(QUERIES[order[at + 1]][0])], keep), id: "next" }, "next →") : null);
      const crits = el("ol", { class: "criteria-list" }, ...q[6].map(([name, desc]) => el("li", {}, el("b", {}, name), desc ? " — " + desc : "")));
      const out = [
        el("h2", {}, "Query " + q[0]),
        el("div", {}, el("span", { class: "tag" }, DOMAINS[q[1]]), el("span", { class: "tag" }, q[2]),
          el("span", { class: "tag" }, LANG_NAMES[q[3]] || q[3] || "–"), ...q[5].map((r) => el("span", { class: "tag" }, r + " requirement"))),
        pager,
        el("div", { class: "query-text" }, q[4]),
        el("details", { open: true }, el("summary", {}, "Criteria (" + q[6].length + ")"), crits),
      ];
      for (let m = 0; m < MODELS.length; m++) out.push(modelSection(m, j, q));
      return out;
    }
    function modelSection(m, j, q) {
      const k = key(m, j);
      const evs = (EV.get(k) || []).slice().sort((a, b) =>
        (typeof a[2] === "number" ? a[2] : 1e9) - (typeof b[2] === "number" ? b[2] : 1e9) || a[3] - b[3]);
      const gens = GEN.get(k) || [];
      const flags = FLAGS.get(k) || [];
      const s = DATA.scores[m][j];
      const nFailed = evs.filter((r) => r[6] !== null).length;
      const sec = el("section", { class: "model", "data-model": MODELS[m] },
        el("header", {}, el("h3", {}, MODELS[m]),
          el("span", { class: "tag", style: scoreColor(s) }, "score " + fmt(s, 2)),
          nFailed ? el("span", { class: "tag bad" }, nFailed + " failed") : null,
          ...flags.map((f) => el("span", { class: "tag warn flag", title: f[3] }, "flagged: " + f[2]))));
      for (const f of flags) sec.append(el("p", { class: "note flag-reason" }, f[3]));
      if (!gens.length) sec.append(el("p", { class: "missing" }, "No response stored for this model."));
      for (const g of gens) {
        if (gens.length > 1) sec.append(el("div", { class: "note" }, "sample " + g[2]));
        if (g[4] !== null) sec.append(el("p", { class: "tag bad gen-error" }, "generation failed: " + g[4]));
        else sec.append(el("pre", { class: "response" }, g[3] === null ? "" : g[3]));
      }
      const table = el("table", { class: "criteria" },
        el("thead", {}, el("tr", {}, el("th", {}, "Criterion"), el("th", { class: "num" }, "Repeat"),
          el("th", { class: "num" }, "Score"), el("th", {}, "Reason"))));
      const body = el("tbody");
      for (const r of evs) {
        const name = typeof r[2] === "number" ? q[6][r[2]][0] : r[2];
        const failed = r[6] !== null;
        body.append(el("tr", { class: failed ? "failed" : null, "data-criterion": name },
          el("td", {}, name), el("td", { class: "num" }, r[3]),
          el("td", { class: "num score", style: scoreColor(r[4]) }, failed ? "failed" : fmt(r[4], 0)),
          el("td", { class: "reason" }, failed ? "error: " + r[6] + (r[5] ? "\n" + r[5] : "") : r[5] || "")));
      }
      table.append(body);
      sec.append(evs.length ? table : el("p", { class: "missing" }, "No evaluations for this model."));
      return sec;
    }

    function render() {
      const { parts, params } = parseHash();
      let view;
      if (parts[0] === "query" && parts[1]) view = queryView(parts[1], params);
      else if (parts[0] === "queries") view = queryList(params);
      else view = leaderboard();
      document.getElementById("app").replaceChildren(...view.filter(Boolean));
      window.scrollTo(0, 0);
    }

    document.title = DATA.title;
    document.getElementById("title").textContent = DATA.title;
    window.addEventListener("hashchange", render);
    render();
    document.body.dataset.ready = "1";
  }
})();
