// An error type that cannot carry a `BreakerError` (here one of the standard library's,
// which cannot be given the impl): one error, at the return type, saying what to add.

#[infuse::circuit_breaker(service = "users")]
async fn parse_id(text: &str) -> Result<u64, std::num::ParseIntError> {
    text.parse()
}

fn main() {}
