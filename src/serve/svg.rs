//! Charts drawn on the server as SVG: a value per day as bars over a scale, with gridlines
//! and dates. A chart is numbers and text only (a template writes the elements, escaping the
//! text), so a page needs no script, no external asset and no network to show one.

use serde::Serialize;

/// The drawing area, in SVG user units.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
/// Room for the scale on the left and the dates below.
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;

/// A bar chart, ready for `templates/chart.hbs`.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub title: String,
    /// The figure that sums the chart up (`1.4 / day`, `2h 10m`).
    pub headline: String,
    /// A sentence for readers of the text alone (and for screen readers).
    pub summary: String,
    pub width: String,
    pub height: String,
    pub bars: Vec<Bar>,
    pub grid: Vec<Tick>,
    pub dates: Vec<Tick>,
    /// No value at all in the period.
    pub empty: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bar {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    /// A CSS class: the kind of value (`deploys`, `failures`, …).
    pub class: String,
    /// Shown on hover: the day and its value.
    pub tip: String,
}

/// A line of the scale, or a date under the bars.
#[derive(Debug, Clone, Serialize)]
pub struct Tick {
    pub x: String,
    pub y: String,
    pub label: String,
}

/// One value of a series: its day (`2026-11-30`) and value (`None`: nothing to measure).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub day: String,
    pub value: Option<f64>,
}

fn n(value: f64) -> String {
    format!("{value:.1}")
}

/// The smallest of 1, 2, 5 × 10ⁿ at or above `value` (a round top for the scale).
fn nice(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * magnitude)
        .find(|top| *top >= value)
        .unwrap_or(10.0 * magnitude)
}

/// What a chart's values are, for its scale and its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Counts: whole numbers, the scale at least 0–4 so that its lines fall on them.
    Count,
    /// Durations in seconds: the scale tops at a round duration (a minute at least).
    Duration,
}

impl Scale {
    fn top(self, max: f64) -> f64 {
        match self {
            Scale::Count => nice(max).max(4.0),
            Scale::Duration => [
                60.0,
                120.0,
                300.0,
                600.0,
                1200.0,
                1800.0,
                3600.0,
                7200.0,
                14400.0,
                28800.0,
                43200.0,
                86400.0,
                172_800.0,
                345_600.0,
                604_800.0,
                1_209_600.0,
                2_419_200.0,
            ]
            .into_iter()
            .find(|top| *top >= max)
            .unwrap_or_else(|| nice(max)),
        }
    }

    fn shown(self, value: f64) -> String {
        match self {
            Scale::Count => number(value),
            Scale::Duration => duration(value),
        }
    }
}

/// The widest a bar is drawn, however few the days.
const BAR_MAX: f64 = 24.0;

/// A bar per point of `series`, on a scale from 0; `what` says what a bar is (`deploys`),
/// `scale` what its values are, `class` is the bars' CSS class.
pub fn bars(
    title: &str,
    headline: &str,
    what: &str,
    series: &[Point],
    scale: Scale,
    class: &str,
) -> Chart {
    let shown = |v: f64| scale.shown(v);
    let top = scale.top(series.iter().filter_map(|p| p.value).fold(0.0, f64::max));
    let plot_w = WIDTH - LEFT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / series.len().max(1) as f64;
    let gap = (slot * 0.2).min(2.0).max(slot - BAR_MAX);
    let bars = series
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let value = p.value?;
            let h = (value / top * plot_h).max(if value > 0.0 { 1.0 } else { 0.0 });
            Some(Bar {
                x: n(LEFT + i as f64 * slot + gap / 2.0),
                y: n(TOP + plot_h - h),
                w: n((slot - gap).max(0.5)),
                h: n(h),
                class: class.to_owned(),
                tip: format!("{}: {}", p.day, shown(value)),
            })
        })
        .collect::<Vec<_>>();
    let grid = (0..=4)
        .map(|k| {
            let value = top * f64::from(k) / 4.0;
            Tick {
                x: n(LEFT - 4.0),
                y: n(TOP + plot_h - plot_h * f64::from(k) / 4.0),
                label: shown(value),
            }
        })
        .collect();
    // About six dates under the bars, the last day always.
    let every = series.len().div_ceil(6).max(1);
    let dates = series
        .iter()
        .enumerate()
        .filter(|(i, _)| (series.len() - 1 - i).is_multiple_of(every))
        .map(|(i, p)| Tick {
            x: n(LEFT + (i as f64 + 0.5) * slot),
            y: n(HEIGHT - 6.0),
            label: p.day.get(5..).unwrap_or(&p.day).to_owned(),
        })
        .collect();
    let measured = series.iter().filter(|p| p.value.is_some()).count();
    Chart {
        title: title.to_owned(),
        headline: headline.to_owned(),
        summary: match (series.first(), series.last()) {
            (Some(first), Some(last)) => format!(
                "{title}: {headline}. Each bar: {what}, a day from {} to {} ({measured} of {} day{} with a value)",
                first.day,
                last.day,
                series.len(),
                if series.len() == 1 { "" } else { "s" }
            ),
            _ => format!("{title}: no data"),
        },
        width: n(WIDTH),
        height: n(HEIGHT),
        empty: bars.iter().all(|b| b.h == "0.0"),
        bars,
        grid,
        dates,
    }
}

/// A duration in seconds as people read it: `45s`, `12m`, `3h 20m`, `2d 4h`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => match (s % 3600) / 60 {
            0 => format!("{}h", s / 3600),
            m => format!("{}h {m}m", s / 3600),
        },
        _ => match (s % 86400) / 3600 {
            0 => format!("{}d", s / 86400),
            h => format!("{}d {h}h", s / 86400),
        },
    }
}

/// A count or a rate: `3`, `0.5`.
pub fn number(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        format!("{}", value.round() as i64)
    } else {
        format!("{value:.1}")
    }
}

/// The day (`2026-10-14`, UTC) of a time in Unix seconds.
fn day_of(at: i64) -> String {
    crate::output::format_time(at).chars().take(10).collect()
}

/// The median of `values` (the lower middle of an even count; nearest rank, as the report's).
fn median(values: &mut [i64]) -> Option<i64> {
    values.sort_unstable();
    crate::dora::percentile(values, 50)
}

/// A value per day of the report's period, from events (day, value) grouped by `reduce`.
fn per_day(
    days: &[crate::dora::Day],
    events: impl IntoIterator<Item = (String, i64)>,
    mut reduce: impl FnMut(&mut Vec<i64>) -> Option<i64>,
) -> Vec<Point> {
    let mut by_day: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for (day, value) in events {
        by_day.entry(day).or_default().push(value);
    }
    days.iter()
        .map(|d| Point {
            day: d.date.clone(),
            value: by_day
                .get_mut(&d.date)
                .and_then(&mut reduce)
                .map(|v| v as f64),
        })
        .collect()
}

/// The four keys of `report` as charts: deploys a day, the lead time of what each day
/// deployed, failed deployments a day, and the time each failure took to restore.
pub fn dora_charts(report: &crate::dora::Report) -> Vec<Chart> {
    let days = &report.series.days;
    let none = "no data".to_owned();
    let f = &report.deployment_frequency;
    let deploys: Vec<Point> = days
        .iter()
        .map(|d| Point {
            day: d.date.clone(),
            value: Some(d.deploys as f64),
        })
        .collect();
    let l = &report.lead_time;
    let lead = per_day(
        days,
        report
            .series
            .lead_times
            .iter()
            .map(|t| (day_of(t.deployed_at), t.seconds)),
        |values| median(values),
    );
    let c = &report.change_failure_rate;
    let failures: Vec<Point> = days
        .iter()
        .map(|d| Point {
            day: d.date.clone(),
            value: Some(d.failures as f64),
        })
        .collect();
    let t = &report.time_to_restore;
    let restore = per_day(
        days,
        report
            .series
            .incidents
            .iter()
            .filter_map(|i| Some((day_of(i.failed_at), i.seconds?))),
        |values| values.iter().copied().max(),
    );
    let spread = |median: Option<i64>, p90: Option<i64>| match (median, p90) {
        (Some(m), Some(p)) => format!("median {}, p90 {}", duration(m as f64), duration(p as f64)),
        _ => none.clone(),
    };
    vec![
        bars(
            "Deployment frequency",
            &f.per_day.map_or(none.clone(), |d| {
                format!(
                    "{} a day ({} deploy{})",
                    number_2(d),
                    f.deploys,
                    if f.deploys == 1 { "" } else { "s" }
                )
            }),
            "successful deploys",
            &deploys,
            Scale::Count,
            "deploys",
        ),
        bars(
            "Lead time for changes",
            &spread(l.median_seconds, l.p90_seconds),
            "the median lead time of the app versions deployed",
            &lead,
            Scale::Duration,
            "lead-time",
        ),
        bars(
            "Change failure rate",
            &c.rate.map_or(none.clone(), |r| {
                format!(
                    "{:.1}% ({} of {} failed)",
                    r * 100.0,
                    c.failed,
                    c.deployments
                )
            }),
            "failed deployments",
            &failures,
            Scale::Count,
            "failures",
        ),
        bars(
            "Time to restore",
            &spread(t.median_seconds, t.p90_seconds),
            "the longest time to restore of the failures that began",
            &restore,
            Scale::Duration,
            "restore",
        ),
    ]
}

/// A rate with two decimals at most: `1.25`, `0.5`, `3`.
fn number_2(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(day: &str, value: Option<f64>) -> Point {
        Point {
            day: day.to_owned(),
            value,
        }
    }

    #[test]
    fn bars_stand_on_a_round_scale() {
        let chart = bars(
            "Deploys",
            "2 / day",
            "the deploys",
            &[
                point("2026-11-28", Some(1.0)),
                point("2026-11-29", None),
                point("2026-11-30", Some(3.0)),
            ],
            Scale::Count,
            "deploys",
        );
        assert_eq!(chart.bars.len(), 2);
        // The scale tops at 5 (the round value over 3): 3 is 60% of the plot's height.
        assert_eq!(chart.grid.last().unwrap().label, "5");
        // Three days: each bar no wider than a bar is drawn.
        assert_eq!(chart.bars[0].w, n(BAR_MAX));
        let plot_h = HEIGHT - TOP - BOTTOM;
        assert_eq!(chart.bars[1].h, n(plot_h * 0.6));
        assert_eq!(chart.bars[1].tip, "2026-11-30: 3");
        assert_eq!(chart.dates.last().unwrap().label, "11-30");
        assert!(!chart.empty);
        assert!(
            chart.summary.contains("(2 of 3 days with a value)"),
            "{}",
            chart.summary
        );
    }

    #[test]
    fn durations_and_numbers_read_well() {
        assert_eq!(duration(42.0), "42s");
        assert_eq!(duration(7200.0), "2h");
        assert_eq!(duration(7260.0), "2h 1m");
        assert_eq!(duration(90000.0), "1d 1h");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.25), "0.2");
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(7.0), 10.0);
        assert_eq!(nice(0.3), 0.5);
        assert_eq!(Scale::Count.top(1.0), 4.0);
        assert_eq!(Scale::Duration.top(0.0), 60.0);
        assert_eq!(Scale::Duration.top(5000.0), 7200.0);
    }
}
