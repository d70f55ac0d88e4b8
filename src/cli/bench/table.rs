//! The report as a table: aligned text for the terminal, and Markdown.

use std::fmt::Write as _;

use super::report::{CellResult, Comparison, MissingCell, Report};
use super::strategy::label;

const COLUMNS: usize = 14;

const HEADER: [&str; COLUMNS] = [
    "workload",
    "strategy",
    "entry",
    "ns/call",
    "95% CI",
    "vs indirect",
    "p",
    "paired (95% CI)",
    "vs retpoline",
    "p",
    "instr/call",
    "mispred/call",
    "indirect br/call",
    "correct",
];

/// Columns aligned to the right (numbers).
const NUMERIC: [bool; COLUMNS] = [
    false, false, false, true, true, true, true, true, true, true, true, true, true, false,
];

/// Rows in report order: per workload, a row per strategy, measured or
/// not. Strategies that do not exist yet get no rows (a note below the
/// table says why); a strategy that exists but has no cell for a workload
/// gets a row saying `n/a` or `FAILED`.
fn rows(report: &Report) -> Vec<[String; COLUMNS]> {
    let mut rows = Vec::new();
    for w in &report.workloads {
        for s in report.strategies.iter().filter(|s| s.missing.is_none()) {
            if let Some(r) = report
                .results
                .iter()
                .find(|r| r.workload == w.name && r.strategy == s.name && r.entry == s.entry)
            {
                rows.push(measured_row(r));
            } else if let Some(m) = report
                .missing
                .iter()
                .find(|m| m.workload == w.name && m.strategy == s.name && m.entry == s.entry)
            {
                let mut row: [String; COLUMNS] = Default::default();
                row[0] = w.name.into();
                row[1] = s.name.into();
                row[2] = s.entry.into();
                row[3] = if m.is_failure() { "FAILED" } else { "n/a" }.into();
                rows.push(row);
            }
        }
    }
    rows
}

fn measured_row(r: &CellResult) -> [String; COLUMNS] {
    let ns = &r.ns_per_call;
    let (vi, pi) = comparison(r.vs_indirect.as_ref());
    let (vr, pr) = comparison(r.vs_retpoline.as_ref());
    [
        r.workload.into(),
        r.strategy.into(),
        r.entry.into(),
        format!("{:.2}", ns.median),
        format!("{:.2}..{:.2}", ns.ci95[0], ns.ci95[1]),
        vi,
        pi,
        r.vs_indirect.as_ref().map_or("-".into(), |c| {
            format!(
                "{:.2} ({:.2}..{:.2})",
                c.paired_ratio, c.paired_ratio_ci95[0], c.paired_ratio_ci95[1]
            )
        }),
        vr,
        pr,
        r.instructions_per_call
            .map_or("-".into(), |v| format!("{v:.2}")),
        r.mispredicts_per_call
            .map_or("-".into(), |v| format!("{v:.3}")),
        r.indirect_branches_per_call
            .map_or("-".into(), |v| format!("{v:.3}")),
        if r.correct { "yes".into() } else { "NO".into() },
    ]
}

fn comparison(c: Option<&Comparison>) -> (String, String) {
    match c {
        None => ("-".into(), "-".into()),
        Some(c) => (
            format!("{:.2}x", c.ratio),
            c.p_value.map_or("-".into(), p_value),
        ),
    }
}

/// Small p-values in scientific notation; 0 (underflow) as a bound.
pub fn p_value(p: f64) -> String {
    if p == 0.0 {
        "<1e-300".into()
    } else if p < 1e-3 {
        format!("{p:.0e}")
    } else {
        format!("{p:.3}")
    }
}

/// Why each missing strategy or cell is missing, one line each: a
/// strategy that does not exist yet once, a cell that could not be built
/// with its workload.
fn missing_notes(report: &Report) -> Vec<String> {
    let mut notes: Vec<String> = Vec::new();
    for s in &report.strategies {
        if let Some(why) = s.missing {
            notes.push(format!("missing {}: {why}", label(s.name, s.entry)));
        }
    }
    let absent = |m: &MissingCell| {
        report
            .strategies
            .iter()
            .any(|s| s.name == m.strategy && s.entry == m.entry && s.missing.is_some())
    };
    for m in report.missing.iter().filter(|m| !absent(m)) {
        notes.push(format!(
            "{} / {}: {}",
            m.workload,
            label(m.strategy, m.entry),
            m.reason
        ));
    }
    notes
}

/// The terminal table.
pub fn terminal(report: &Report) -> String {
    let rows = rows(report);
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let w = widths[i];
            if NUMERIC[i] {
                let _ = write!(s, "{cell:>w$}  ");
            } else {
                let _ = write!(s, "{cell:<w$}  ");
            }
        }
        s.trim_end().to_string()
    };
    let mut out = String::new();
    out.push_str(&line(&HEADER.map(String::from)));
    out.push('\n');
    let mut last_workload = String::new();
    for row in &rows {
        if !last_workload.is_empty() && row[0] != last_workload {
            out.push('\n');
        }
        last_workload.clone_from(&row[0]);
        out.push_str(&line(row));
        out.push('\n');
    }
    for note in missing_notes(report) {
        let _ = writeln!(out, "{note}");
    }
    out
}

/// The Markdown report: context, the table, what each cell built.
pub fn markdown(report: &Report) -> String {
    let c = &report.config;
    let h = &report.host;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# hotcall bench: `{}` preset{}\n",
        c.preset,
        if c.hardened { ", hardened" } else { "" }
    );
    if c.hardened {
        let _ = writeln!(
            out,
            "**Hardened** (`--hardened`): a retpoline-hardened host. hotcall's engines run with \
             `EngineConfig::hardened` (pointer entries, thunks' misses and static sites' miss stubs go \
             through the retpoline) and `listed` makes its misses through the retpoline; `indirect` is \
             still a plain call, the unhardened reference.\n"
        );
    }
    let _ = writeln!(
        out,
        "Host: {} ({}), {} cores, {}, load average {} before and {} after timing. {} samples per cell after {} warm-up rounds, \
         {} calls per sample and thread, strategies in a new random order each round; \
         seed {}.\n",
        h.cpu,
        h.arch,
        h.cores,
        h.os,
        h.loadavg_before.as_deref().unwrap_or("?"),
        h.loadavg_after.as_deref().unwrap_or("?"),
        c.samples,
        c.warmup_rounds,
        c.calls_per_sample,
        c.seed
    );
    let _ = writeln!(
        out,
        "ns/call: median of the samples; 95% CI: distribution-free interval of the \
         median (binomial order statistics); `vs indirect` / `vs retpoline`: \
         ratio of medians (below 1 is faster) and Welch's two-sided p; paired: median of \
         the per-round ratios (samples taken moments apart) with its 95% interval, robust \
         to load that comes and goes. instr/call, mispred/call and indirect br/call \
         (indirect calls and jumps executed, returns not counted): callgrind \
         (`--count`), `-` when not run.\n"
    );
    let _ = writeln!(out, "| {} |", HEADER.join(" | "));
    let align: Vec<&str> = NUMERIC
        .iter()
        .map(|&n| if n { "---:" } else { "---" })
        .collect();
    let _ = writeln!(out, "|{}|", align.join("|"));
    for row in rows(report) {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    let notes = missing_notes(report);
    if !notes.is_empty() {
        let _ = writeln!(out, "\nNot measured:\n");
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    if let Some(t) = &report.isa_table {
        let _ = writeln!(out, "\n## Thunks on each ISA\n");
        let _ = writeln!(
            out,
            "`--count --arch`: the thunks of the workloads' signature, with 0 to 8 slots, run under qemu-user \
             ({}).\n",
            t.method
        );
        out.push_str(&t.markdown);
    }
    let _ = writeln!(out, "\n## Workloads\n");
    for w in &report.workloads {
        let _ = writeln!(out, "- `{}`: {}", w.name, w.description);
    }
    let _ = writeln!(out, "\n## Strategies\n");
    for s in &report.strategies {
        let status = s
            .missing
            .map_or(String::new(), |m| format!(" **Missing:** {m}."));
        let _ = writeln!(
            out,
            "- `{}` (entry `{}`): {}.{status}",
            s.name, s.entry, s.description
        );
    }
    let _ = writeln!(out, "\n## What each cell built\n");
    for r in &report.results {
        let _ = writeln!(
            out,
            "- {} / {}: {}",
            r.workload,
            label(r.strategy, r.entry),
            r.detail
        );
    }
    out
}
