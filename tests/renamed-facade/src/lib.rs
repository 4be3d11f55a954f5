//! A crate whose only way to the toolkit is the name `toolkit` (the facade renamed), re-exported
//! as `crate::perf` the way a company's own toolkit crate would: the attributes reach it with
//! `crate = path`.

/// The facade, where this crate's code reaches it.
pub mod perf {
    pub use toolkit::*;
}

/// A stage whose expansion names the facade through `crate::perf`.
pub struct Fraud;

#[perf::stage(crate = crate::perf)]
impl Fraud {
    fn process(&self, amount: u64) -> Result<u64, perf::StageError> {
        Ok(score(amount))
    }
}

/// A profiled function, reaching the facade by its renamed crate.
#[perf::profiled(crate = ::toolkit)]
pub fn score(amount: u64) -> u64 {
    amount.rotate_left(7) ^ amount
}

/// An async stage, through the same path.
pub struct Lookup;

#[perf::stage(crate = crate::perf, name = "lookup")]
impl Lookup {
    async fn process(&self, user: u64) -> Option<u64> {
        (user & 1 == 0).then_some(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_and_functions_reached_through_a_renamed_facade_are_recorded() {
        let pipeline = perf::Pipeline::new().stage(Fraud);
        let session = perf::Profiler::new().start().expect("no other session");
        for amount in 0..10 {
            pipeline.run(amount).expect("passes");
        }
        let report = session.finish().expect("finishes");
        assert_eq!(report.stage("Fraud").expect("recorded").timing.calls, 10);
        let fraud = report.stage("Fraud").unwrap();
        assert_eq!(fraud.functions.len(), 1, "{report}");
        assert_eq!(fraud.functions[0].timing.calls, 10);
        assert_eq!(<Lookup as perf::AsyncStage<u64>>::name(&Lookup), "lookup");
    }
}
