//! `--plot FILE.svg`: one panel per workload, each strategy's median ns per
//! call as a bar with its 95% interval as whiskers and the numbers written
//! out; missing strategies are labelled as such in every panel and in the
//! legend.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::report::{Report, StrategyInfo};
use super::strategy::label;

const PANEL_W: u32 = 760;
const PANEL_H: u32 = 380;
const COLUMNS: usize = 2;
const TITLE_H: u32 = 70;
const LEGEND_LINE_H: u32 = 26;

/// A color per strategy, in table order (Okabe-Ito's colorblind-safe
/// colors, with dark grey for the sixth so no two neighbours look alike).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(90, 90, 90),
    RGBColor(86, 180, 233),
    RGBColor(240, 228, 66),
];

const MISSING_GREY: RGBColor = RGBColor(150, 150, 150);

/// The color of strategy row `j`: the palette in order over the strategies
/// that exist (missing ones are grey), so up to eight measured strategies
/// get distinct colors.
fn color(strategies: &[StrategyInfo], j: usize) -> RGBColor {
    let i = strategies[..j]
        .iter()
        .filter(|s| s.missing.is_none())
        .count();
    PALETTE[i % PALETTE.len()]
}

pub fn write_svg(report: &Report, path: &Path) -> Result<(), String> {
    let rows = report.workloads.len().div_ceil(COLUMNS).max(1);
    let legend_h = LEGEND_LINE_H * (report.strategies.len() as u32 + 1);
    let width = PANEL_W * COLUMNS as u32;
    let height = TITLE_H + PANEL_H * rows as u32 + legend_h;
    let root = SVGBackend::new(path, (width, height)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (title, rest) = root.split_vertically(TITLE_H);
    let (panels, legend) = rest.split_vertically(PANEL_H * rows as u32);
    title
        .titled(
            &format!(
                "hotcall bench ({} preset{}): ns per call, median and 95% interval; shorter is faster",
                report.config.preset,
                if report.config.hardened {
                    ", hardened"
                } else {
                    ""
                }
            ),
            ("sans-serif", 26),
        )
        .map_err(|e| err(&e))?;
    title
        .draw(&Text::new(
            format!(
                "{} ({}), {} cores; {} samples per cell, {} calls each; \
                 \"x indirect\": median of the per-round ratios",
                report.host.cpu,
                report.host.arch,
                report.host.cores,
                report.config.samples,
                report.config.calls_per_sample
            ),
            (20, 44),
            ("sans-serif", 16).into_font().color(&BLACK.mix(0.7)),
        ))
        .map_err(|e| err(&e))?;
    for (w, area) in report
        .workloads
        .iter()
        .zip(panels.split_evenly((rows, COLUMNS)))
    {
        draw_panel(report, w.name, w.description, &area).map_err(|e| err(&e))?;
    }
    draw_legend(report, &legend).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn draw_panel(
    report: &Report,
    workload: &str,
    description: &str,
    area: &Area<'_>,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let strategies = &report.strategies;
    let n = strategies.len() as i32;
    let cells: Vec<_> = strategies
        .iter()
        .map(|s| {
            report
                .results
                .iter()
                .find(|r| r.workload == workload && r.strategy == s.name && r.entry == s.entry)
        })
        .collect();
    let x_max = cells
        .iter()
        .flatten()
        .map(|r| r.ns_per_call.ci95[1].max(r.ns_per_call.median))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(0.1)
        * 1.7;
    // Strategy j is drawn in segment n-1-j, so the table's first is on top.
    // (An i32 range is inclusive in plotters: 0..n-1 gives n segments.)
    let row = |j: usize| n - 1 - j as i32;
    let labels: Vec<String> = strategies
        .iter()
        .zip(&cells)
        .map(|(s, _)| label(s.name, s.entry))
        .collect();
    // Why a row has no bar: the strategy does not exist yet, or it has no
    // cell for this workload (not applicable, or failed to build).
    let absent: Vec<&str> = strategies
        .iter()
        .map(|s| {
            if s.missing.is_some() {
                return "missing: not built yet";
            }
            match report
                .missing
                .iter()
                .find(|m| m.workload == workload && m.strategy == s.name && m.entry == s.entry)
            {
                Some(m) if m.is_failure() => "FAILED to build",
                Some(_) => "n/a for this workload",
                None => "not run",
            }
        })
        .collect();
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{workload}: {description}"), ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(180)
        .build_cartesian_2d(0.0..x_max, (0..n - 1).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .x_desc("ns per call")
        .x_labels(6)
        .x_label_formatter(&|v| format!("{v:.1}"))
        .y_labels(n as usize)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => usize::try_from(n - 1 - i)
                .ok()
                .and_then(|k| labels.get(k).cloned())
                .unwrap_or_default(),
            _ => String::new(),
        })
        .label_style(("sans-serif", 14))
        .draw()?;
    for (j, cell) in cells.iter().enumerate() {
        let y = row(j);
        let Some(r) = cell else {
            chart.draw_series(std::iter::once(
                EmptyElement::at((0.0, SegmentValue::CenterOf(y)))
                    + Text::new(
                        absent[j],
                        (6, -7),
                        ("sans-serif", 13).into_font().color(&MISSING_GREY),
                    ),
            ))?;
            continue;
        };
        let c = color(strategies, j);
        let ns = &r.ns_per_call;
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(y)),
                (ns.median, SegmentValue::Exact(y + 1)),
            ],
            c.mix(0.55).filled(),
        );
        bar.set_margin(7, 7, 0, 0);
        chart.draw_series(std::iter::once(bar))?;
        let (lo, hi) = (ns.ci95[0], ns.ci95[1]);
        let whisker = BLACK.stroke_width(2);
        let mid = |x: f64| (x, SegmentValue::CenterOf(y));
        chart.draw_series(std::iter::once(PathElement::new(
            vec![mid(lo), mid(hi)],
            whisker,
        )))?;
        for x in [lo, hi] {
            chart.draw_series(std::iter::once(
                EmptyElement::at(mid(x)) + PathElement::new(vec![(0, -8), (0, 8)], whisker),
            ))?;
        }
        let mut label = format!("{:.2} [{lo:.2}, {hi:.2}]", ns.median);
        if let Some(v) = &r.vs_indirect
            && r.strategy != "indirect"
        {
            // The paired ratio: robust to load that comes and goes, which
            // can move a whole cell's median (see report.rs).
            label.push_str(&format!("  {:.2}x indirect", v.paired_ratio));
        }
        if !r.correct {
            label.push_str("  WRONG RESULTS");
        }
        chart.draw_series(std::iter::once(
            EmptyElement::at(mid(hi)) + Text::new(label, (8, -7), ("sans-serif", 13).into_font()),
        ))?;
    }
    Ok(())
}

fn draw_legend(
    report: &Report,
    area: &Area<'_>,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let font = ("sans-serif", 15).into_font();
    for (j, s) in report.strategies.iter().enumerate() {
        let y = LEGEND_LINE_H as i32 * (j as i32 + 1) - 8;
        let (fill, text) = match s.missing {
            None => (
                color(&report.strategies, j).mix(0.55).filled(),
                format!("{} (entry {}): {}", s.name, s.entry, s.description),
            ),
            Some(why) => (
                MISSING_GREY.mix(0.3).filled(),
                format!("{} (entry {}): MISSING, {why}", s.name, s.entry),
            ),
        };
        area.draw(&Rectangle::new([(20, y - 12), (44, y + 4)], fill))?;
        area.draw(&Text::new(text, (54, y - 12), font.clone()))?;
    }
    Ok(())
}
