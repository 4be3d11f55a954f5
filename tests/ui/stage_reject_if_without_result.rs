use pipeline::stage;

struct Check;

impl Check {
    fn is_rejection(_: &std::io::Error) -> bool {
        true
    }
}

#[stage(reject_if = Check::is_rejection)]
impl Check {
    fn process(&self, amount: u64) -> Option<u64> {
        (amount > 0).then_some(amount)
    }
}

fn main() {}
