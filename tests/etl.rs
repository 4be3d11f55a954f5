//! The ETL example: every stage changes the event's type, and its numbers add up.
#![cfg(not(feature = "off"))] // asserts recorded figures; `tests/off.rs` covers the off build

mod common;

#[path = "../examples/etl.rs"]
mod etl;

#[test]
fn the_etl_example_adds_up_and_finds_its_heavy_stage() {
    let _lock = common::exclusive();
    const LINES: u64 = 4_000;
    let run = etl::run_etl(LINES, 4, None).expect("the example runs");
    run.check(LINES).expect("its numbers add up");
    let load = run.run();
    // The input's own mix: one line in 40 malformed, one in 500 in an unknown currency.
    assert_eq!(load.rejected, (0..LINES).filter(|i| i % 40 == 17).count() as u64);
    assert_eq!(load.failed, (0..LINES).filter(|i| i % 40 != 17 && i % 500 == 123).count() as u64);
    assert!(load.filtered > 0, "some transactions are under the minimum");
    // Each region's totals are the sum of what its transactions became.
    let mut want = std::collections::BTreeMap::new();
    let pipeline = etl::pipeline();
    for i in 0..LINES {
        if let Ok(Some(scored)) = pipeline.run(etl::line(i)) {
            want.entry(scored.region).or_insert_with(etl::RegionTotals::default).add(&scored);
        }
    }
    assert_eq!(run.totals, want);
    let slowest = &run.report.stages[0];
    assert_eq!(slowest.name, "Score", "{}", run.report);
}
