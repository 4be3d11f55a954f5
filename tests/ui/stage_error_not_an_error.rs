// A stage's own error type must be a `std::error::Error` or convert into `StageError`.
use pipeline::stage;

#[derive(Debug)]
struct Invalid {
    field: &'static str,
}

struct Validate;

#[stage]
impl Validate {
    fn process(&self, amount: u64) -> Result<u64, Invalid> {
        if amount == 0 {
            return Err(Invalid { field: "amount" });
        }
        Ok(amount)
    }
}

fn main() {}
