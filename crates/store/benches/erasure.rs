//! Erasure coding throughput on one core: 1 MiB blocks, encode, and decode
//! with two data shards lost (the worst case: real decoding work). Prints
//! GiB/s of payload; asserts nothing.
//!
//! Run: `cargo bench -p coop-store --bench erasure`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use coop_store::Codec;
use reed_solomon_erasure::galois_8::ReedSolomon;

const BLOCK: usize = 1 << 20;
/// Measure each figure for about this long, after a warm-up.
const MEASURE: Duration = Duration::from_secs(2);

fn gib_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / (1u64 << 30) as f64
}

fn measure(mut run: impl FnMut()) -> (usize, Duration) {
    for _ in 0..20 {
        run();
    }
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() < MEASURE {
        run();
        rounds += 1;
    }
    (rounds, start.elapsed())
}

fn main() {
    let block: Vec<u8> = (0..BLOCK).map(|i| (i * 131 % 251) as u8).collect();
    println!("erasure coding, one core, 1 MiB blocks (payload GiB/s)");
    for (k, m) in [(4, 2), (8, 2), (6, 3)] {
        let codec = Codec::new(k, m).expect("valid layout");
        let (rounds, elapsed) = measure(|| {
            black_box(codec.encode(black_box(&block)).expect("encode"));
        });
        let encode_fresh = gib_per_s(rounds * BLOCK, elapsed);
        let mut reused = Vec::new();
        let (rounds, elapsed) = measure(|| {
            codec
                .encode_into(black_box(&block), &mut reused)
                .expect("encode");
            black_box(&reused);
        });
        let encode = gib_per_s(rounds * BLOCK, elapsed);
        let shards = codec.encode(&block).expect("encode");
        // Lose the first two data shards: decoding must rebuild them.
        let kept: Vec<_> = shards.into_iter().filter(|s| s.index >= 2).collect();
        let (rounds, elapsed) = measure(|| {
            black_box(codec.decode(black_box(&kept), BLOCK).expect("decode"));
        });
        let decode = gib_per_s(rounds * BLOCK, elapsed);
        // Reference: the Reed-Solomon library alone on pre-split shards, no
        // copies, no checksums. The ratio is what coop's shard handling costs.
        let rs = ReedSolomon::new(k, m).expect("valid layout");
        let shard_len = BLOCK / k;
        let mut raw: Vec<Vec<u8>> = (0..k + m)
            .map(|i| block[(i % k) * shard_len..(i % k + 1) * shard_len].to_vec())
            .collect();
        let (rounds, elapsed) = measure(|| {
            rs.encode(black_box(&mut raw)).expect("encode");
        });
        let reference = gib_per_s(rounds * BLOCK, elapsed);
        println!(
            "ec:{k}+{m}  encode+checksums {encode:>6.2} GiB/s (fresh buffers {encode_fresh:>5.2})   \
             decode (2 lost) {decode:>6.2} GiB/s   library encode alone {reference:>6.2} GiB/s \
             (coop/library {:.2})",
            encode / reference
        );
    }
    // Checksums are part of both paths; show their own cost too.
    let (rounds, elapsed) = measure(|| {
        black_box(blake3::hash(black_box(&block)));
    });
    println!(
        "blake3 alone      {:>6.2} GiB/s",
        gib_per_s(rounds * BLOCK, elapsed)
    );
    // What the agent's write path sees: fresh shard buffers per block, with
    // the allocator settings `coop up` applies.
    coop_store::tune_allocator();
    let codec = Codec::new(4, 2).expect("valid layout");
    let (rounds, elapsed) = measure(|| {
        black_box(codec.encode(black_box(&block)).expect("encode"));
    });
    println!(
        "ec:4+2  encode+checksums, fresh buffers, coop's allocator settings {:>6.2} GiB/s",
        gib_per_s(rounds * BLOCK, elapsed)
    );
}
