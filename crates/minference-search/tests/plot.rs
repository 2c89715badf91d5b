//! The PNG pictures are written, decodable-looking and of the expected size.

use minference_burn::Pattern;
use minference_search::eval::Outcome;
use minference_search::plot::{needle_heatmap, pattern_map};
use minference_search::{Measured, TaskKind};

fn png_size(path: &std::path::Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    (be(16), be(20))
}

#[test]
fn maps_and_heatmaps_are_pngs() {
    let dir = std::env::temp_dir().join(format!("minference-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cell = |pattern, recall| Measured {
        pattern,
        recall,
        cost: 0.3,
    };
    let chosen = vec![
        vec![
            cell(Pattern::Dense, 1.0),
            cell(Pattern::BlockSparse { top_k: 4 }, 0.7),
        ],
        vec![
            cell(Pattern::AShape { sink: 4, local: 64 }, 0.95),
            cell(
                Pattern::VerticalSlash {
                    vertical: 30,
                    slash: 50,
                },
                0.99,
            ),
        ],
    ];
    let map = dir.join("map.png");
    pattern_map(&chosen, "test map", &map).unwrap();
    let (w, h) = png_size(&map);
    assert!(w > 100 && h > 100, "{w}x{h}");

    let outcome = |setting: &str, length, depth, correct| Outcome {
        kind: TaskKind::Needle,
        tokens: length,
        length,
        depth,
        setting: setting.into(),
        correct,
        output: String::new(),
        prefill_seconds: 0.0,
        density: 1.0,
    };
    let outcomes = vec![
        outcome("dense", 1024, 0.0, true),
        outcome("dense", 2048, 0.5, false),
        outcome("sparse", 1024, 0.0, true),
    ];
    let heat = dir.join("heat.png");
    needle_heatmap(&outcomes, &["dense".into(), "sparse".into()], &heat).unwrap();
    let (w, _) = png_size(&heat);
    assert!(w > 200, "two panels: {w}");
    std::fs::remove_dir_all(&dir).unwrap();
}
