//! Writes values the way `arbitrary` reads them back, so that seeds can be built from typed
//! operations: integers little-endian, `bool` as one byte, `Option` as a one-byte tag then the
//! value, arrays and tuples element by element.

pub trait Encode {
    fn encode(&self, out: &mut Vec<u8>);
}

macro_rules! encode_integers {
    ($($t:ty),*) => {
        $(impl Encode for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        })*
    };
}

encode_integers!(u8, u16, u32, u64, i8, i16, i32, i64);

impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Some(value) => {
                out.push(1);
                value.encode(out);
            }
            None => out.push(0),
        }
    }
}

impl<T: Encode, const N: usize> Encode for [T; N] {
    fn encode(&self, out: &mut Vec<u8>) {
        for value in self {
            value.encode(out);
        }
    }
}

impl<A: Encode, B: Encode> Encode for (A, B) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
    }
}
