#[infuse::circuit_breaker(service = "users")]
struct Client;

fn main() {}
