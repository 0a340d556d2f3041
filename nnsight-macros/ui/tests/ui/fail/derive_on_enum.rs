// `Inspectable` cannot be derived for an enum: it has no fixed module tree.
use nnsight::Inspectable;

#[derive(Inspectable)]
enum Either {
    Left,
    Right,
}

fn main() {}
