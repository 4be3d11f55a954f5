use pipeline::profiled;

#[profiled]
const fn limit() -> u64 {
    90
}

fn main() {}
