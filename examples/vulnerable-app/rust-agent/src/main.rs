//! Collects the ids of notes to back up. Part of Phalanx's deliberately vulnerable demo.

use smallvec::SmallVec;

fn main() {
    let mut ids: SmallVec<[u32; 8]> = SmallVec::new();
    // `insert_many` is the function the smallvec advisory is about.
    ids.insert_many(0, [3, 1, 2]);
    println!("{ids:?}");
}
