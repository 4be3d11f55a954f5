use pipeline::profiled;

trait Scorer {
    #[profiled]
    fn score(&self) -> u64;
}

fn main() {}
