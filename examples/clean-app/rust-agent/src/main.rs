//! Collects the ids of notes to back up.

use smallvec::SmallVec;

fn main() {
    let mut ids: SmallVec<[u32; 8]> = SmallVec::new();
    ids.insert_many(0, [3, 1, 2]);
    println!("{ids:?}");
}
