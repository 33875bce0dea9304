//! The verdicts: each scenario's ratios to the floor over several
//! runs, as the median and the spread (lowest to highest).

use crate::measure::{CPU_TARGET, Outcome, P99_TARGET, THROUGHPUT_TARGET, verdict};

/// Median and range of some runs' values.
pub struct Spread {
    pub median: f64,
    low: f64,
    high: f64,
}

impl Spread {
    pub fn of(values: impl Iterator<Item = f64>) -> Spread {
        let mut values: Vec<f64> = values.collect();
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => values[n / 2],
            _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        };
        Spread {
            median,
            low: values.first().copied().unwrap_or(f64::NAN),
            high: values.last().copied().unwrap_or(f64::NAN),
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "**{:.2}×** ({:.2}–{:.2})", self.median, self.low, self.high)
    }
}

/// Prints one row per scenario over every run in `runs`.
pub fn print(runs: &[Vec<Outcome>]) {
    let Some(first) = runs.first() else { return };
    println!("Hookplane against the floor, median (lowest–highest) of {} runs:", runs.len());
    println!();
    println!(
        "| Scenario | Throughput, sustained (target ≥ {THROUGHPUT_TARGET}) | CPU per request (target ≤ {CPU_TARGET}) | p99 at the tail rate (target ≤ {P99_TARGET}) | Tail rate, median (lowest–highest) | Errors |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (index, scenario) in first.iter().enumerate() {
        let of = |value: fn(&Outcome) -> f64| Spread::of(runs.iter().map(|run| value(&run[index])));
        let (throughput, cpu, p99, rate) = (of(|o| o.throughput), of(|o| o.cpu), of(|o| o.p99), of(|o| o.rate));
        let errors: u64 = runs.iter().map(|run| run[index].errors).sum();
        println!(
            "| {} | {throughput} {} | {cpu} {} | {p99} {} | {:.0}/s ({:.0}–{:.0}) | {errors} |",
            scenario.name,
            verdict(throughput.median >= THROUGHPUT_TARGET),
            verdict(cpu.median <= CPU_TARGET),
            verdict(p99.median <= P99_TARGET && errors == 0),
            rate.median,
            rate.low,
            rate.high,
        );
    }
}
