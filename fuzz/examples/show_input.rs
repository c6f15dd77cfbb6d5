//! Prints the operations a router target reads from an input file (a crash, a seed):
//! `cargo run --release --example show_input -- router_relay FILE`.

use diemcau_fuzz::{DatagramOp, RelayOp};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(target), Some(path)) = (args.next(), args.next()) else {
        eprintln!("usage: show_input router_datagram|router_relay FILE");
        std::process::exit(2);
    };
    let data = std::fs::read(&path).expect("input file");
    match target.as_str() {
        "router_datagram" => DatagramOp::read_all(&data, usize::MAX)
            .iter()
            .for_each(|op| println!("{op:?}")),
        "router_relay" => RelayOp::read_all(&data, usize::MAX)
            .iter()
            .for_each(|op| println!("{op:?}")),
        _ => {
            eprintln!("unknown target {target}");
            std::process::exit(2);
        }
    }
}
