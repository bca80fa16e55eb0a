//! `zfw top` on a terminal: a ratatui view redrawn once a second (README
//! "zfw top").  `q` (or Esc, or Ctrl-C: raw mode delivers it as a key)
//! quits; SIGTERM, SIGHUP and SIGINT end it too.  The terminal is restored
//! on every way out, a failed map read and a panic (ratatui's hook)
//! included.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, LineGauge, Paragraph, Row, Table};
use ratatui::Frame;

use super::{fill_ratio, rate_text, rules_summary, sample, view, View, INTERVAL};
use crate::error::{Error, Result};
use crate::maps::Maps;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn catch_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: on_signal only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(s, &action) };
    }
}

/// Whether a key ends `top`.
fn quits(code: KeyCode, mods: KeyModifiers) -> bool {
    match code {
        KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => true,
        KeyCode::Char('c') => mods.contains(KeyModifiers::CONTROL),
        _ => false,
    }
}

/// Wait until `until` for a quitting key; true when one came (or a signal).
fn wait_for_quit(until: Instant) -> Result<bool> {
    loop {
        if STOP.load(Ordering::SeqCst) {
            return Ok(true);
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        // short slices, so that a signal is seen within 100 ms
        let ready = event::poll(left.min(Duration::from_millis(100)))
            .map_err(|e| Error::runtime(format!("reading the terminal: {e}")))?;
        if !ready {
            continue;
        }
        let ev = event::read().map_err(|e| Error::runtime(format!("reading the terminal: {e}")))?;
        if let Event::Key(k) = ev {
            if k.kind != KeyEventKind::Release && quits(k.code, k.modifiers) {
                return Ok(true);
            }
        }
    }
}

/// Run the live view until `q`.
pub fn run(maps: &Maps, root: &str) -> Result<()> {
    catch_signals();
    // the first sample before the screen changes: a failure is a plain line
    let mut prev = sample(maps)?;
    let mut terminal =
        ratatui::try_init().map_err(|e| Error::runtime(format!("setting up the terminal: {e}")))?;
    let res = (|| {
        let mut shown = view(None, &prev);
        let mut next = Instant::now() + INTERVAL;
        loop {
            terminal
                .draw(|f| draw(f, &shown, root))
                .map_err(|e| Error::runtime(format!("drawing: {e}")))?;
            if wait_for_quit(next)? {
                return Ok(());
            }
            next += INTERVAL;
            let now = sample(maps)?;
            shown = view(Some(&prev), &now);
            prev = now;
        }
    })();
    // shows the cursor again (Terminal's Drop), then leaves raw mode and
    // the alternate screen
    drop(terminal);
    let restored = ratatui::try_restore();
    res?;
    restored.map_err(|e| Error::runtime(format!("restoring the terminal: {e}")))
}

fn title(s: &str) -> Block<'_> {
    Block::bordered().title(Line::styled(
        s,
        Style::default().add_modifier(Modifier::BOLD),
    ))
}

fn draw(f: &mut Frame, v: &View, root: &str) {
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let lost = match &v.events_lost {
        Some(r) => format!("events lost {} ({}/s)", r.total, rate_text(r, v.interval_s)),
        None => "events lost unknown".into(),
    };
    f.render_widget(
        Paragraph::new(format!(
            "zfw top  {root}  policy generation {}  {lost}  (q quits)",
            v.policy_gen
        )),
        head,
    );
    f.render_widget(
        Paragraph::new(rules_summary(v)).style(Style::default().fg(Color::DarkGray)),
        foot,
    );
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body);
    let [verdicts, reasons, rules, flows] = Layout::vertical([
        Constraint::Length(v.verdicts.len() as u16 + 3),
        Constraint::Min(4),
        Constraint::Length(v.rules.len().max(1) as u16 + 3),
        Constraint::Length(v.flows.len().max(1) as u16 + 3),
    ])
    .areas(left);
    draw_rates(f, verdicts, v, true);
    draw_rates(f, reasons, v, false);
    draw_rules(f, rules, v);
    draw_flows(f, flows, v);
    draw_maps(f, right, v);
}

fn draw_rates(f: &mut Frame, area: Rect, v: &View, by_verdict: bool) {
    let rows = if by_verdict { &v.verdicts } else { &v.reasons };
    let name = if by_verdict { "verdict" } else { "reason" };
    let header = Row::new([name, "pkts/s", "total"]).style(Style::default().fg(Color::Yellow));
    let body = rows.iter().map(|r| {
        Row::new([
            r.name.clone(),
            rate_text(r, v.interval_s),
            r.total.to_string(),
        ])
    });
    let t = if by_verdict {
        "Packets/s by verdict"
    } else {
        "Packets/s by reason"
    };
    let widths = [
        Constraint::Min(24),
        Constraint::Length(12),
        Constraint::Length(14),
    ];
    f.render_widget(
        Table::new(body, widths).header(header).block(title(t)),
        area,
    );
}

/// The rules with the most hits per second (first packets of flows).
fn draw_rules(f: &mut Frame, area: Rect, v: &View) {
    let header = Row::new(["rule", "hits/s", "total"]).style(Style::default().fg(Color::Yellow));
    let body = v.rules.iter().map(|r| {
        Row::new([
            r.name.clone(),
            rate_text(r, v.interval_s),
            r.total.to_string(),
        ])
    });
    let widths = [
        Constraint::Min(40),
        Constraint::Length(10),
        Constraint::Length(12),
    ];
    f.render_widget(
        Table::new(body, widths)
            .header(header)
            .block(title("Top rules by hits/s")),
        area,
    );
}

fn draw_flows(f: &mut Frame, area: Rect, v: &View) {
    let header = Row::new(["proto", "direction", "state", "flows"])
        .style(Style::default().fg(Color::Yellow));
    let body = v.flows.iter().map(|(c, n)| {
        Row::new([
            c.proto.clone(),
            c.direction.to_string(),
            c.state_text(),
            n.to_string(),
        ])
    });
    let widths = [
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Min(12),
        Constraint::Length(10),
    ];
    f.render_widget(
        Table::new(body, widths)
            .header(header)
            .block(title("Flows by protocol and state")),
        area,
    );
}

/// One line per map whose count measures use (not arrays, whose slots
/// always exist, nor the ring buffer), fullest first: name, a fill bar,
/// entries / capacity.
fn draw_maps(f: &mut Frame, area: Rect, v: &View) {
    let block = title("Map fill (entries / capacity; arrays not shown)");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let mut maps: Vec<_> = v.maps.iter().filter(|m| m.measures_use).collect();
    maps.sort_by(|a, b| fill_ratio(b).total_cmp(&fill_ratio(a)));
    for (i, m) in maps.iter().take(inner.height as usize).enumerate() {
        let row = Rect {
            y: inner.y + i as u16,
            height: 1,
            ..inner
        };
        let [name, bar, count] = Layout::horizontal([
            Constraint::Length(23),
            Constraint::Min(6),
            Constraint::Length(18),
        ])
        .areas(row);
        f.render_widget(Paragraph::new(m.name), name);
        let ratio = fill_ratio(m);
        let color = match ratio {
            r if r >= 0.9 => Color::Red,
            r if r >= 0.7 => Color::Yellow,
            _ => Color::Green,
        };
        f.render_widget(
            LineGauge::default()
                .ratio(ratio)
                .label(format!("{:>5.1}%", 100.0 * ratio))
                .filled_style(Style::default().fg(color)),
            bar,
        );
        f.render_widget(
            Paragraph::new(format!(" {}/{}", m.entries, m.capacity)),
            count,
        );
    }
}
