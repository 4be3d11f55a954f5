//! ETL: text lines become parsed transactions, small ones are filtered out, the rest are enriched
//! with a region and a euro amount, scored for risk by a heavy model, and aggregated per region
//! in a sink. Every stage changes the event's type; bad lines are rejected by the parser's own
//! error type; the outputs are kept. Four workers, a report, a trace, and numbers that add up.
//!
//! Run: `cargo run --release --example etl`

use std::collections::BTreeMap;
use std::fmt;
use std::hint::black_box;
use std::path::Path;
use std::sync::Mutex;

use pipeline::run::RunSummary;
use pipeline::{profiled, stage, CountingAllocator, Pipeline, Profiler, Report, WorkerConfig};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

/// A transaction as parsed from its line `id,user,amount,currency`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tx {
    pub id: u64,
    pub user: String,
    pub amount_cents: u64,
    pub currency: Currency,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Currency {
    Eur,
    Usd,
    Gbp,
}

/// Why a line is not a transaction: the parser's own error type.
#[derive(Debug)]
pub enum ParseError {
    /// Not four fields, not numbers: bad input, rejected.
    Malformed { line: String, why: &'static str },
    /// A currency the exchange table does not know: a gap in our data, a failure.
    UnknownCurrency(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Malformed { line, why } => write!(f, "{why}: {line:?}"),
            ParseError::UnknownCurrency(code) => write!(f, "no exchange rate for {code}"),
        }
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    /// Malformed lines are turned away on purpose; the rest are failures.
    pub fn is_malformed(&self) -> bool {
        matches!(self, ParseError::Malformed { .. })
    }
}

/// `String` → `Tx`: the stage that changes the event's type.
pub struct Parse;

#[stage(reject_if = ParseError::is_malformed)]
impl Parse {
    fn process(&self, line: String) -> Result<Tx, ParseError> {
        let malformed = |why| ParseError::Malformed { line: line.clone(), why };
        let mut fields = line.split(',');
        let (Some(id), Some(user), Some(amount), Some(currency), None) =
            (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(malformed("not four fields"));
        };
        let id = id.parse().map_err(|_| malformed("id is not a number"))?;
        let amount_cents = parse_cents(amount).ok_or_else(|| malformed("bad amount"))?;
        let currency = match currency {
            "EUR" => Currency::Eur,
            "USD" => Currency::Usd,
            "GBP" => Currency::Gbp,
            other => return Err(ParseError::UnknownCurrency(other.to_owned())),
        };
        Ok(Tx { id, user: user.to_owned(), amount_cents, currency })
    }
}

/// `"12.34"` → 1234.
fn parse_cents(amount: &str) -> Option<u64> {
    let (units, cents) = amount.split_once('.')?;
    if cents.len() != 2 {
        return None;
    }
    Some(units.parse::<u64>().ok()? * 100 + cents.parse::<u64>().ok()?)
}

/// Drops transactions below a minimum: a filter, counted as filtered, never as a rejection.
pub struct AtLeast {
    pub cents: u64,
}

#[stage]
impl AtLeast {
    fn process(&self, tx: Tx) -> Option<Tx> {
        (tx.amount_cents >= self.cents).then_some(tx)
    }
}

/// A transaction with its region and its amount in euro cents.
#[derive(Clone, Debug)]
pub struct Enriched {
    pub tx: Tx,
    pub region: &'static str,
    pub eur_cents: u64,
}

/// `Tx` → `Enriched`.
pub struct Enrich;

#[stage]
impl Enrich {
    fn process(&self, tx: Tx) -> Enriched {
        let region = region_of(&tx.user);
        let eur_cents = to_eur_cents(tx.amount_cents, tx.currency);
        Enriched { tx, region, eur_cents }
    }
}

#[profiled]
fn region_of(user: &str) -> &'static str {
    const REGIONS: [&str; 4] = ["eu-west", "us-east", "ap-south", "sa-east"];
    REGIONS[user.bytes().map(usize::from).sum::<usize>() % REGIONS.len()]
}

fn to_eur_cents(cents: u64, currency: Currency) -> u64 {
    match currency {
        Currency::Eur => cents,
        Currency::Usd => cents * 92 / 100,
        Currency::Gbp => cents * 117 / 100,
    }
}

/// A scored transaction: what the sink aggregates.
#[derive(Clone, Debug)]
pub struct Scored {
    pub id: u64,
    pub region: &'static str,
    pub eur_cents: u64,
    /// 0..100.
    pub risk: u64,
}

/// `Enriched` → `Scored`: the heavy stage.
pub struct Score;

#[stage]
impl Score {
    fn process(&self, enriched: Enriched) -> Scored {
        let risk = risk_of(&enriched);
        Scored { id: enriched.tx.id, region: enriched.region, eur_cents: enriched.eur_cents, risk }
    }
}

/// Annotated: the report times it.
#[profiled]
fn risk_of(enriched: &Enriched) -> u64 {
    model(enriched.eur_cents ^ enriched.tx.id.rotate_left(17)) % 100
}

/// The scoring model: where the time goes, and nobody annotated it. CPU samples find it.
fn model(features: u64) -> u64 {
    let mut h = features;
    for round in 0..20_000u64 {
        h = black_box(h.rotate_left(5) ^ round).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// What the sink adds up per region.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RegionTotals {
    pub transactions: u64,
    pub eur_cents: u64,
    pub high_risk: u64,
    /// The riskiest transaction: (risk, id), the highest id among equals.
    pub riskiest: (u64, u64),
}

impl RegionTotals {
    /// Adds one scored transaction.
    pub fn add(&mut self, scored: &Scored) {
        self.transactions += 1;
        self.eur_cents += scored.eur_cents;
        self.high_risk += u64::from(scored.risk >= 90);
        self.riskiest = self.riskiest.max((scored.risk, scored.id));
    }
}

/// The sink: totals per region, from every output the workers hand over.
#[derive(Default)]
pub struct Totals(Mutex<BTreeMap<&'static str, RegionTotals>>);

impl Totals {
    pub fn add(&self, scored: Scored) {
        let mut totals = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        totals.entry(scored.region).or_default().add(&scored);
    }

    pub fn per_region(&self) -> BTreeMap<&'static str, RegionTotals> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// The whole pipeline: `String` in, `Scored` out.
pub fn pipeline() -> Pipeline<String, Scored> {
    Pipeline::new().stage(Parse).stage(AtLeast { cents: 500 }).stage(Enrich).stage(Score)
}

/// Line `i` of the input: one in 40 malformed, one in 500 in an unknown currency.
pub fn line(i: u64) -> String {
    const USERS: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];
    const CURRENCIES: [&str; 3] = ["EUR", "USD", "GBP"];
    let user = USERS[(i % 6) as usize];
    match i {
        _ if i % 40 == 17 => format!("{i};{user};oops"),
        _ if i % 500 == 123 => format!("{i},{user},10.00,XXX"),
        _ => {
            let cents = (i * 7_919) % 50_000;
            let currency = CURRENCIES[(i % 3) as usize];
            format!("{i},{user},{}.{:02},{currency}", cents / 100, cents % 100)
        }
    }
}

/// One run: its report and the sink's totals.
pub struct Etl {
    pub report: Report,
    pub totals: BTreeMap<&'static str, RegionTotals>,
}

impl Etl {
    /// The run's load section.
    pub fn run(&self) -> &RunSummary {
        &self.report.runs[0]
    }

    /// Checks that the numbers add up: every event is completed, filtered, rejected or failed;
    /// every completed event reached the sink once; the stages saw what the counts say.
    pub fn check(&self, lines: u64) -> Result<(), String> {
        let run = self.run();
        let sunk: u64 = self.totals.values().map(|t| t.transactions).sum();
        let stage_calls = |name: &str| self.report.stage(name).map_or(0, |s| s.timing.calls);
        let checks = [
            (run.submitted == lines, "every line was submitted"),
            (
                run.submitted == run.completed + run.filtered + run.rejected + run.failed,
                "submitted = completed + filtered + rejected + failed",
            ),
            (sunk == run.completed, "every completed event reached the sink once"),
            (stage_calls("Parse") == lines, "Parse saw every line"),
            (
                stage_calls("AtLeast") == lines - run.rejected - run.failed,
                "AtLeast saw every parsed transaction",
            ),
            (stage_calls("Score") == run.completed, "Score saw every event that passed the filter"),
            (stage_calls("sink") == run.completed, "the sink was called once per output"),
        ];
        match checks.iter().find(|(holds, _)| !holds) {
            Some((_, what)) => Err(format!("the numbers do not add up: {what}\n{run}")),
            None => Ok(()),
        }
    }
}

/// Runs `lines` lines through the pipeline on `workers` workers, profiled (CPU samples too),
/// with a Chrome trace of every event when `trace` is given.
pub fn run_etl(lines: u64, workers: usize, trace: Option<&Path>) -> Result<Etl, pipeline::Error> {
    let pipeline = pipeline();
    let totals = Totals::default();
    let profiler = Profiler::new().name("etl").sample_cpu(999);
    let profiler = match trace {
        Some(path) => profiler.chrome_trace(path),
        None => profiler,
    }
    .start()?;
    pipeline.run_concurrent_into(
        (0..lines).map(line),
        WorkerConfig::new(workers).queue(1024),
        |scored| totals.add(scored),
    )?;
    let report = profiler.finish()?;
    Ok(Etl { report, totals: totals.per_region() })
}

#[allow(dead_code)] // tests and benches include this file as a module
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new("target/etl");
    std::fs::create_dir_all(dir)?;
    let trace = dir.join("trace.json");
    const LINES: u64 = 50_000;
    let etl = run_etl(LINES, 4, Some(&trace))?;
    println!("{}\n", etl.report);
    println!("Totals per region (from the sink):");
    for (region, totals) in &etl.totals {
        println!(
            "  {region:<9} {:>7} transactions, {:>12.2} EUR, {:>5} high risk (riskiest: #{})",
            totals.transactions,
            totals.eur_cents as f64 / 100.0,
            totals.high_risk,
            totals.riskiest.1
        );
    }
    etl.check(LINES)?;
    let run = etl.run();
    println!(
        "\nThe numbers add up: {} lines = {} completed + {} filtered + {} rejected + {} failed; \
         the sink received {} outputs.",
        run.submitted,
        run.completed,
        run.filtered,
        run.rejected,
        run.failed,
        etl.totals.values().map(|t| t.transactions).sum::<u64>()
    );
    Ok(())
}
