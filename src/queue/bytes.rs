pub fn max_message(capacity: u64) -> u64 {
    capacity / 2 - 8
}
