// Cascade dashboard: reads /v1/* every few seconds and redraws the page in place.
// Plain JavaScript, no libraries; every text goes into the page as text, never as markup.
"use strict";
(() => {
  const args = JSON.parse(document.body.dataset.args);
  const main = document.getElementById("main");
  const live = document.getElementById("live");
  const REFRESH_MS = 2000;

  // ---- building blocks ------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value == null || value === false) continue;
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) if (child != null) node.append(child);
    return node;
  }
  function s(tag, attrs, ...children) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    node.append(...children);
    return node;
  }
  const num = (n) => Number(n).toLocaleString("en-US");
  function duration(seconds) {
    if (seconds == null) return "—";
    const units = [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]];
    const parts = [];
    let left = Math.max(0, Math.round(seconds));
    for (const [unit, size] of units) {
      if (left >= size || (unit === "s" && parts.length === 0)) parts.push(Math.floor(left / size) + unit);
      left %= size;
      if (parts.length === 2) break;
    }
    return parts.join(" ");
  }
  const ago = (ms, now) => (now - ms < 1000 ? "just now" : duration((now - ms) / 1000) + " ago");
  const when = (ms) => (ms == null ? "—" : new Date(ms).toLocaleString());
  const stageOf = (letter) => args.stages.find((st) => st.letter === letter);
  const stageLabel = (letter) => {
    const stage = stageOf(letter);
    return stage ? `${stage.name} (${letter.toUpperCase()})` : `${letter.toUpperCase()} (disabled)`;
  };
  const workerHref = (letter, name) => {
    const stage = stageOf(letter);
    return `/worker/${encodeURIComponent(stage ? stage.name.toLowerCase() : letter)}/${encodeURIComponent(name)}`;
  };
  const workerLink = (letter, name) => h("a", { class: "worker-link", href: workerHref(letter, name) }, name);
  const jobLink = (n) => (n == null ? "—" : h("a", { class: "job-link", href: `/web/job/${n}` }, `#${n}`));
  const cell = (value, cls) => h("td", { class: cls }, value);
  const numCell = (value, cls) => h("td", { class: `num ${cls || ""}` }, num(value));
  function table(id, headers) {
    const body = h("tbody");
    const node = h("table", { id }, h("thead", {}, h("tr", {}, headers.map(([label, cls]) => h("th", { class: cls }, label)))), body);
    return { node, body };
  }
  function fill(body, rows, columns, empty) {
    body.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { class: "empty", colspan: columns }, empty))]));
  }
  function setLive(ok, text) {
    live.className = `live ${ok ? "ok" : "down"}`;
    live.textContent = text;
  }

  // Fetches url() now and every REFRESH_MS (backing off while it fails, pausing while the tab
  // is hidden) and hands the JSON to render (null for a 404). Returns "refresh now".
  function poll(url, render) {
    let timer = null;
    let failures = 0;
    let latest = 0;
    async function tick() {
      clearTimeout(timer);
      const seq = ++latest;
      try {
        const response = await fetch(url(), { cache: "no-store" });
        if (!response.ok && response.status !== 404) {
          throw new Error(response.status === 503 ? "database unavailable" : `HTTP ${response.status}`);
        }
        const data = response.status === 404 ? null : await response.json();
        if (seq !== latest) return;
        render(data);
        failures = 0;
        setLive(true, `live · ${new Date().toLocaleTimeString()}`);
      } catch (error) {
        if (seq !== latest) return;
        failures += 1;
        setLive(false, `reconnecting… (${error.message})`);
      }
      if (!document.hidden) timer = setTimeout(tick, Math.min(REFRESH_MS * 2 ** failures, 30000));
    }
    document.addEventListener("visibilitychange", () => (document.hidden ? clearTimeout(timer) : tick()));
    tick();
    return tick;
  }

  // A "1–50 of 10,000 ‹ ›" control over state[key].
  function pager(state, key, size, refresh) {
    const label = h("span");
    const prev = h("button", { type: "button", onclick: () => { state[key] = Math.max(0, state[key] - size); refresh(); } }, "‹ Prev");
    const next = h("button", { type: "button", onclick: () => { state[key] += size; refresh(); } }, "Next ›");
    const node = h("div", { class: "pager", "data-pager": key }, label, prev, next);
    function update(page) {
      if (page.items.length === 0 && page.offset > 0) {
        state[key] = Math.max(0, Math.floor((page.total - 1) / size) * size);
        refresh();
        return;
      }
      label.textContent = page.total ? `${num(page.offset + 1)}–${num(page.offset + page.items.length)} of ${num(page.total)}` : "";
      prev.disabled = page.offset === 0;
      next.disabled = page.offset + page.items.length >= page.total;
    }
    return { node, update };
  }

  // ---- overview ---------------------------------------------------------------------------
  // A line per stage over the last 60 minutes, as wide as its box (so text is not stretched).
  function chart(data, width) {
    const W = Math.max(360, Math.round(width) || 720), H = 180, L = 36, R = 8, T = 8, B = 18, minutes = 60;
    const stages = data.stages.map((row) => row.stage);
    const series = Object.fromEntries(stages.map((st) => [st, new Array(minutes).fill(0)]));
    for (const p of data.throughput) {
      const i = Math.round((p.minute - data.chart_since) / 60000);
      if (series[p.stage] && i >= 0 && i < minutes) series[p.stage][i] = p.completed;
    }
    const max = Math.max(1, ...Object.values(series).flat());
    const x = (i) => L + (i * (W - L - R)) / (minutes - 1);
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const children = [
      s("line", { class: "axis", x1: L, y1: y(0), x2: W - R, y2: y(0) }),
      s("line", { class: "axis", x1: L, y1: y(max), x2: W - R, y2: y(max) }),
      s("text", { x: L - 4, y: y(max) + 4, "text-anchor": "end" }, num(max)),
      s("text", { x: L - 4, y: y(0) + 4, "text-anchor": "end" }, "0"),
      s("text", { x: L, y: H - 4 }, "60 min ago"),
      s("text", { x: W - R, y: H - 4, "text-anchor": "end" }, "now"),
    ];
    for (const st of stages) {
      const points = series[st].map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
      children.push(s("polyline", { points, stroke: `var(--s-${st})`, "data-stage": st }));
    }
    return s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Jobs completed per minute and stage" }, ...children);
  }

  function poolText(pool) {
    if (!pool) return "—";
    return `${pool.busy}/${pool.workers} busy · queue ${pool.queued}/${pool.queue_capacity} · ${num(pool.completed)} done`;
  }

  function overview() {
    const state = { stage: "", workers: 0, problems: 0, leaderboard: 0 };
    const title = h("h1", {}, args.project);
    const bar = h("div");
    const facts = h("div", { class: "facts" });
    const stages = table("stages", [["Stage"], ["Open", "num"], ["Leased", "num"], ["Done", "num"], ["Failed", "num"], ["Jobs/min", "num"], ["ETA", "num"], ["Workers", "num"], ["Local pool"]]);
    const chartBox = h("div", { class: "chart" });
    const legend = h("div", { class: "legend" });
    const workers = table("workers", [["Name"], ["Stage"], ["Nickname"], ["Job"], ["Progress"], ["Completed", "num"], ["Last seen"]]);
    const problems = table("problems", [["Job"], ["Stage"], ["State"], ["Flags", "num"], ["Reason"], ["Changed"]]);
    const board = table("leaderboard", [["#", "num"], ["Nickname"], ["Jobs completed", "num"]]);
    const actions = table("actions", [["When"], ["Action"], ["Detail"], ["By"]]);
    const counts = { workers: h("small"), problems: h("small"), leaderboard: h("small") };
    const filter = h("select", { id: "worker-stage", onchange: () => { state.stage = filter.value; state.workers = 0; refresh(); } },
      h("option", { value: "" }, "all stages"), args.stages.map((st) => h("option", { value: st.letter }, stageLabel(st.letter))));
    const refresh = () => tick();
    const pagers = {
      workers: pager(state, "workers", 50, refresh),
      problems: pager(state, "problems", 20, refresh),
      leaderboard: pager(state, "leaderboard", 20, refresh),
    };
    main.replaceChildren(
      h("section", { id: "summary" }, title, h("div", { class: "bar" }, bar), facts),
      h("section", {}, h("h2", {}, "Stages"), stages.node),
      h("section", {}, h("h2", {}, "Jobs per minute", legend), chartBox),
      h("div", { class: "grid2" },
        h("section", {}, h("h2", {}, "Workers", counts.workers, filter), workers.node, pagers.workers.node),
        h("section", {}, h("h2", {}, "Failed and flagged jobs", counts.problems), problems.node, pagers.problems.node)),
      h("section", {}, h("h2", {}, "Leaderboard", counts.leaderboard), board.node, pagers.leaderboard.node),
      h("section", {}, h("h2", {}, "Operator actions", h("small", {}, "latest first")), actions.node),
    );

    function render(data) {
      const eta = data.eta;
      bar.style.width = `${data.completion_percent}%`;
      facts.replaceChildren(
        h("span", { id: "completion" }, "Completion ", h("b", {}, `${data.completion_percent.toFixed(2)}%`), ` (${num(eta.done)} / ${num(eta.total)} jobs)`),
        h("span", { id: "eta" }, "ETA ", h("b", {}, eta.seconds_left == null ? (eta.remaining ? "calculating…" : "finished") : duration(eta.seconds_left))),
        h("span", {}, "Rate ", h("b", {}, num(Math.round(eta.rate_per_hour))), " jobs/hour"),
        h("span", {}, "Remaining ", h("b", {}, num(eta.remaining))),
      );
      fill(stages.body, data.stages.map((row) => h("tr", { "data-stage": row.stage },
        h("td", { class: "name" }, row.name ? `${row.name} (${row.stage.toUpperCase()})` : `${row.stage.toUpperCase()} (disabled)`,
          row.paused ? h("span", { class: "paused", title: `paused by ${row.paused.paused_by} ${ago(row.paused.paused_at, data.now)}` }, "paused") : ""),
        numCell(row.open, "open"), numCell(row.leased, "leased"), numCell(row.done, "done"),
        numCell(row.failed, row.failed ? "failed bad" : "failed"),
        cell(row.jobs_per_minute.toFixed(1), "num rate"), cell(duration(row.eta_seconds), "num eta"),
        numCell(row.workers, "workers"), cell(poolText(row.pool), "pool"))), 9, "No stages.");
      chartBox.replaceChildren(chart(data, chartBox.clientWidth));
      legend.replaceChildren(...data.stages.map((row) => h("span", {}, h("span", { class: "swatch", style: `background: var(--s-${row.stage})` }), stageLabel(row.stage))));

      counts.workers.textContent = `${num(data.workers.total)} connected`;
      fill(workers.body, data.workers.items.map((w) => h("tr", { class: "worker" },
        cell(workerLink(w.stage, w.display_name)), cell(stageLabel(w.stage)), cell(w.nickname), cell(jobLink(w.job)),
        cell(w.progress, "wrap progress"), numCell(w.jobs_completed), cell(ago(w.last_seen, data.now)))),
        7, state.stage ? "No workers at this stage." : "No workers are connected.");
      pagers.workers.update(data.workers);

      counts.problems.textContent = num(data.problems.total);
      fill(problems.body, data.problems.items.map((p) => h("tr", { class: "problem" },
        cell(jobLink(p.summary.id)), cell(stageLabel(p.summary.stage)),
        cell(p.summary.state, `state-${p.summary.state}`), numCell(p.summary.flags),
        cell(p.reason == null ? "—" : p.reason, "wrap reason"), cell(ago(p.summary.updated_at, data.now)))),
        6, "No failed or flagged jobs.");
      pagers.problems.update(data.problems);

      counts.leaderboard.textContent = `${num(data.leaderboard.total)} nickname${data.leaderboard.total === 1 ? "" : "s"}`;
      fill(board.body, data.leaderboard.items.map((e, i) => h("tr", {},
        numCell(data.leaderboard.offset + i + 1), cell(e.nickname), numCell(e.jobs_completed))),
        3, "There are no users on the leaderboard yet.");
      pagers.leaderboard.update(data.leaderboard);

      fill(actions.body, data.actions.map((a) => h("tr", { class: "action" },
        cell(ago(a.at, data.now)), cell(a.action, "kind"), cell(a.detail, "wrap detail"), cell(a.actor))),
        4, "No operator actions yet.");
    }

    const tick = poll(() => {
      const query = new URLSearchParams({ workers_offset: state.workers, problems_offset: state.problems, leaderboard_offset: state.leaderboard });
      if (state.stage) query.set("stage", state.stage);
      return `/v1/dashboard?${query}`;
    }, render);
  }

  // ---- one worker ---------------------------------------------------------------------------
  function worker() {
    const details = h("dl", { id: "worker" });
    main.replaceChildren(h("section", {}, h("h1", {}, args.name), details));
    poll(() => `/v1/workers/${args.stage}/${encodeURIComponent(args.name)}`, (w) => {
      if (!w) {
        details.replaceChildren(h("dd", { class: "empty" }, "This worker is no longer connected: it left, or was removed after going silent."));
        return;
      }
      const now = Date.now();
      const hours = (w.last_seen + 1000 - w.first_seen) / 3600000;
      const rows = [
        ["Stage", stageLabel(w.stage)],
        ["Nickname", w.nickname],
        ["Current job", jobLink(w.job)],
        ["Progress", h("span", { class: "progress" }, w.progress)],
        ["Jobs completed", h("span", { class: "completed" }, num(w.jobs_completed))],
        ["Efficiency", `${(w.jobs_completed / hours).toFixed(2)} jobs per hour`],
        ["First seen", `${when(w.first_seen)} (${ago(w.first_seen, now)})`],
        ["Last seen", `${when(w.last_seen)} (${ago(w.last_seen, now)})`],
      ];
      details.replaceChildren(...rows.flatMap(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]));
    });
  }

  // ---- one job ------------------------------------------------------------------------------
  function job() {
    const details = h("dl", { id: "job" });
    const data = table("job-data", [["Stage"], ["Input"]]);
    const history = table("job-history", [["When"], ["Event"], ["Stage"], ["Worker"], ["Detail"]]);
    main.replaceChildren(
      h("section", {}, h("h1", {}, `Job #${args.job}`), details),
      h("section", {}, h("h2", {}, "Data at each stage"), data.node),
      h("section", {}, h("h2", {}, "History"), history.node),
    );
    poll(() => `/v1/jobs/${args.job}`, (j) => {
      if (!j) {
        details.replaceChildren(h("dd", { class: "empty" }, "This job no longer exists (the jobs were reloaded)."));
        return;
      }
      const sum = j.summary;
      const rows = [
        ["Stage", stageLabel(sum.stage)],
        ["State", h("span", { class: `state state-${sum.state}` }, sum.state)],
        ["Attempts at this stage", num(sum.attempts)],
        ["Invalid-input reports here", num(sum.flags)],
        j.leased_to ? ["Leased to", [workerLink(sum.stage, j.leased_to), ` until ${when(j.lease_expires_at)}`]] : null,
        sum.error ? ["Error", h("span", { class: "bad" }, sum.error)] : null,
        ["Last change", when(sum.updated_at)],
        j.completed_at ? ["Finished", when(j.completed_at)] : null,
      ].filter(Boolean);
      details.replaceChildren(...rows.flatMap(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]));
      const inputs = j.data.map((value, i) => [String.fromCharCode(97 + i), value]).filter(([, value]) => value != null);
      const dataRows = inputs.map(([letter, value]) => h("tr", {}, cell(stageLabel(letter)), cell(h("pre", {}, value), "wrap")));
      if (j.result != null) dataRows.push(h("tr", {}, cell("Result"), cell(h("pre", {}, j.result), "wrap")));
      fill(data.body, dataRows, 2, "No data.");
      fill(history.body, j.events.map((e) => h("tr", { class: `event event-${e.kind}` },
        cell(when(e.at)), cell(e.kind.replace("_", " ")), cell(stageLabel(e.stage)),
        cell(e.worker ? workerLink(e.stage, e.worker) : "—"), cell(e.detail == null ? "—" : e.detail, "wrap"))), 5, "Nothing happened to this job yet.");
    });
  }

  function missing() {
    main.replaceChildren(h("section", {}, h("h1", {}, args.message), h("a", { href: "/web" }, "Back to the dashboard")));
    setLive(true, "");
  }

  ({ overview, worker, job, missing })[args.page]();
})();
