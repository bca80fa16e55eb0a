//! `zfw top` when stdout is not a terminal (or with `--once`/`--count`):
//! one plain block per interval, separated by a blank line (README
//! "zfw top").

use std::time::Instant;

use super::{fill_ratio, rate_text, rules_summary, sample, view, Rate, View, INTERVAL};
use crate::error::Result;
use crate::maps::Maps;

fn delta_text(r: &Rate) -> String {
    r.delta.map_or_else(|| "-".into(), |d| d.to_string())
}

/// A header (name, rate and interval columns, then TOTAL) and one row per
/// rate, the name column `w` wide.
fn rate_rows(out: &mut String, head: (&str, &str, &str), w: usize, rows: &[Rate], secs: f64) {
    let (name, rate, n) = head;
    out.push_str(&format!("{name:<w$} {rate:>12} {n:>10} {:>14}\n", "TOTAL"));
    for r in rows {
        out.push_str(&format!(
            "{:<w$} {:>12} {:>10} {:>14}\n",
            r.name,
            rate_text(r, secs),
            delta_text(r),
            r.total
        ));
    }
}

/// One block of text for `v`.
pub fn render(v: &View) -> String {
    let secs = v.interval_s;
    let mut out = format!(
        "zfw top: interval {secs:.3} s, policy generation {}\n",
        v.policy_gen
    );
    rate_rows(
        &mut out,
        ("VERDICT", "PKTS/S", "PACKETS"),
        13,
        &v.verdicts,
        secs,
    );
    out.push_str(&format!(
        "{:<24} {:<8} {:>12} {:>10} {:>14}\n",
        "REASON", "VERDICT", "PKTS/S", "PACKETS", "TOTAL"
    ));
    for r in &v.reasons {
        out.push_str(&format!(
            "{:<24} {:<8} {:>12} {:>10} {:>14}\n",
            r.name,
            r.verdict,
            rate_text(r, secs),
            delta_text(r),
            r.total
        ));
    }
    out.push_str(&format!(
        "{:<24} {:>10} {:>10} {:>7}\n",
        "MAP", "ENTRIES", "CAPACITY", "FILL"
    ));
    for m in &v.maps {
        let fill = if m.measures_use {
            format!("{:.1}%", 100.0 * fill_ratio(m))
        } else {
            "-".into()
        };
        out.push_str(&format!(
            "{:<24} {:>10} {:>10} {:>7}\n",
            m.name, m.entries, m.capacity, fill
        ));
    }
    out.push_str(&format!(
        "{:<8} {:<10} {:<24} {:>10}\n",
        "FLOWS", "DIRECTION", "STATE", "COUNT"
    ));
    for (c, n) in &v.flows {
        out.push_str(&format!(
            "{:<8} {:<10} {:<24} {:>10}\n",
            c.proto,
            c.direction,
            c.state_text(),
            n
        ));
    }
    rate_rows(&mut out, ("TOP RULE", "HITS/S", "HITS"), 64, &v.rules, secs);
    match &v.events_lost {
        Some(r) => out.push_str(&format!(
            "EVENTS LOST {} (in this interval {})\n",
            r.total,
            delta_text(r)
        )),
        None => out.push_str("EVENTS LOST unknown (no stats_map)\n"),
    }
    out.push_str(&rules_summary(v));
    out.push('\n');
    out
}

/// Print a block after every interval, `count` times (None: until killed
/// or stdout goes away).  Each block's rates are over the interval since
/// the previous sample, the first over the interval after start.
pub fn run(maps: &Maps, count: Option<u64>) -> Result<()> {
    let start = Instant::now();
    let mut prev = sample(maps)?;
    let mut printed = 0u64;
    while count.is_none_or(|c| printed < c) {
        // ticks at start + k intervals, so blocks do not drift
        let next = start + INTERVAL * u32::try_from(printed + 1).unwrap_or(u32::MAX);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let now = sample(maps)?;
        let sep = if printed == 0 { "" } else { "\n" };
        crate::out!("{sep}{}", render(&view(Some(&prev), &now)))?;
        prev = now;
        printed += 1;
    }
    Ok(())
}
