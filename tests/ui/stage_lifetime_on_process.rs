use pipeline::stage;

struct Borrower;

#[stage]
impl Borrower {
    fn process<'a>(&'a self, event: &'a str) -> &'a str {
        event
    }
}

fn main() {}
