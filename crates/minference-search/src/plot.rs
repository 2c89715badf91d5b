//! Pictures: the searched pattern map and the needle heat-map (PNG, with `plotters`).

use crate::eval::Outcome;
use crate::search::Measured;
use crate::tasks::TaskKind;
use minference_burn::Pattern;
use plotters::prelude::*;
use std::path::Path;

/// Colour of a pattern kind at full recall.
fn pattern_colour(p: &Pattern) -> RGBColor {
    match p {
        Pattern::Dense => RGBColor(90, 90, 90),
        Pattern::AShape { .. } => RGBColor(230, 120, 30),
        Pattern::VerticalSlash { .. } => RGBColor(40, 110, 200),
        Pattern::BlockSparse { .. } => RGBColor(40, 160, 80),
    }
}

/// Mixes `c` towards white: shade 1 keeps the colour, 0 is white.
fn shade(c: RGBColor, amount: f64) -> RGBColor {
    let a = amount.clamp(0.0, 1.0);
    let mix = |x: u8| (255.0 - (255.0 - x as f64) * a) as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

fn plot_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Layer × head map of the chosen patterns: colour = pattern, shade = recall (the lightest
/// shade is 50 % recall, full colour 100 %).
pub fn pattern_map(chosen: &[Vec<Measured>], title: &str, path: &Path) -> std::io::Result<()> {
    let layers = chosen.len();
    let heads = chosen.first().map_or(0, Vec::len);
    let cell = 28u32;
    let w = (160 + cell * heads as u32 + 170).max(9 * title.len() as u32);
    let h = 70 + cell * layers as u32 + 40;
    let root = BitMapBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    root.draw(&Text::new(title, (10, 10), ("sans-serif", 18)))
        .map_err(plot_error)?;
    let (x0, y0) = (60i32, 50i32);
    for h in 0..heads {
        let label = Text::new(
            format!("{h}"),
            (x0 + (h as i32) * cell as i32 + 9, y0 - 16),
            ("sans-serif", 13),
        );
        root.draw(&label).map_err(plot_error)?;
    }
    for (l, layer) in chosen.iter().enumerate() {
        let y = y0 + (l as i32) * cell as i32;
        root.draw(&Text::new(format!("{l}"), (20, y + 7), ("sans-serif", 13)))
            .map_err(plot_error)?;
        for (h, m) in layer.iter().enumerate() {
            let x = x0 + (h as i32) * cell as i32;
            let colour = shade(
                pattern_colour(&m.pattern),
                (m.recall - 0.5) / 0.5 * 0.8 + 0.2,
            );
            root.draw(&Rectangle::new(
                [(x, y), (x + cell as i32 - 2, y + cell as i32 - 2)],
                colour.filled(),
            ))
            .map_err(plot_error)?;
        }
    }
    let legend_x = x0 + (heads as i32) * cell as i32 + 20;
    let examples = [
        Pattern::Dense,
        Pattern::AShape { sink: 0, local: 1 },
        Pattern::VerticalSlash {
            vertical: 1,
            slash: 1,
        },
        Pattern::BlockSparse { top_k: 1 },
    ];
    for (i, p) in examples.iter().enumerate() {
        let y = y0 + i as i32 * 24;
        root.draw(&Rectangle::new(
            [(legend_x, y), (legend_x + 16, y + 16)],
            pattern_colour(p).filled(),
        ))
        .map_err(plot_error)?;
        root.draw(&Text::new(
            p.name(),
            (legend_x + 22, y + 2),
            ("sans-serif", 13),
        ))
        .map_err(plot_error)?;
    }
    root.draw(&Text::new(
        "x: head, y: layer; lighter = lower recall",
        (10, (h - 24) as i32),
        ("sans-serif", 13),
    ))
    .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

/// Needle heat-map: one panel per setting, depth (rows) × length (columns), green where the
/// needle was retrieved and red where not.
pub fn needle_heatmap(
    outcomes: &[Outcome],
    settings: &[String],
    path: &Path,
) -> std::io::Result<()> {
    let needles: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.kind == TaskKind::Needle)
        .collect();
    let mut lengths: Vec<usize> = needles.iter().map(|o| o.length).collect();
    lengths.sort_unstable();
    lengths.dedup();
    let mut depths: Vec<f64> = needles.iter().map(|o| o.depth).collect();
    depths.sort_by(f64::total_cmp);
    depths.dedup();
    let cell = 44i32;
    let panel_w = 80 + cell * lengths.len() as i32 + 30;
    let w = (panel_w * settings.len() as i32).max(200) as u32;
    let h = (80 + cell * depths.len() as i32 + 50) as u32;
    let root = BitMapBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    for (s, setting) in settings.iter().enumerate() {
        let px = s as i32 * panel_w;
        root.draw(&Text::new(
            setting.as_str(),
            (px + 10, 10),
            ("sans-serif", 16),
        ))
        .map_err(plot_error)?;
        for (j, len) in lengths.iter().enumerate() {
            let label = Text::new(
                format!("{}", len),
                (px + 70 + j as i32 * cell + 4, 40),
                ("sans-serif", 12),
            );
            root.draw(&label).map_err(plot_error)?;
        }
        for (i, depth) in depths.iter().enumerate() {
            let y = 60 + i as i32 * cell;
            root.draw(&Text::new(
                format!("{:.0}%", depth * 100.0),
                (px + 10, y + 15),
                ("sans-serif", 12),
            ))
            .map_err(plot_error)?;
            for (j, len) in lengths.iter().enumerate() {
                let x = px + 70 + j as i32 * cell;
                let hit = needles
                    .iter()
                    .find(|o| &o.setting == setting && o.length == *len && o.depth == *depth);
                let colour = match hit {
                    Some(o) if o.correct => RGBColor(60, 170, 90),
                    Some(_) => RGBColor(215, 70, 60),
                    None => RGBColor(220, 220, 220),
                };
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell - 3, y + cell - 3)],
                    colour.filled(),
                ))
                .map_err(plot_error)?;
            }
        }
    }
    root.draw(&Text::new(
        "x: prompt length (tokens), y: needle depth; green = retrieved",
        (10, h as i32 - 24),
        ("sans-serif", 13),
    ))
    .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

/// The mask an index implies for head `h` (batch 0), one pixel block per `cell`×`cell` tokens:
/// dark where the kernel attends, light grey for causal pairs it skips, white above the
/// diagonal. How the book draws the three patterns.
pub fn index_map(
    index: &minference_burn::SparseIndex,
    h: usize,
    cell: usize,
    title: &str,
    path: &Path,
) -> std::io::Result<()> {
    let g = index.geometry;
    let (rows, cols) = (g.n_queries.div_ceil(cell), g.n_keys.div_ceil(cell));
    let scale = 2u32;
    let (w, hgt) = (cols as u32 * scale + 20, rows as u32 * scale + 50);
    let root = BitMapBackend::new(path, (w.max(8 * title.len() as u32), hgt)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    root.draw(&Text::new(title, (10, 8), ("sans-serif", 15)))
        .map_err(plot_error)?;
    for r in 0..rows {
        let mask = index.mask_rows(0, h, r * cell..((r + 1) * cell).min(g.n_queries));
        for c in 0..cols {
            let keys = c * cell..((c + 1) * cell).min(g.n_keys);
            let attended = mask
                .chunks_exact(g.n_keys)
                .any(|row| row[keys.clone()].iter().any(|&m| m));
            let causal = keys.start < g.query_offset + (r + 1) * cell;
            let colour = if attended {
                RGBColor(30, 60, 140)
            } else if causal {
                RGBColor(225, 225, 225)
            } else {
                WHITE
            };
            let (x, y) = (
                10 + (c as u32 * scale) as i32,
                35 + (r as u32 * scale) as i32,
            );
            root.draw(&Rectangle::new(
                [(x, y), (x + scale as i32, y + scale as i32)],
                colour.filled(),
            ))
            .map_err(plot_error)?;
        }
    }
    root.present().map_err(plot_error)
}
