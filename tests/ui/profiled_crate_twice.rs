use pipeline::profiled;

#[profiled(crate = ::pipeline, crate = ::pipeline)]
fn score(amount: u64) -> u64 {
    amount / 10
}

fn main() {
    score(1);
}
