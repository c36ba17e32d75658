//! The reader as a `serde::Deserializer`, built on its pull steps (`Reader::value`,
//! `next_element`, `next_key`, `colon`), so it can be compared with serde_json: the tests and
//! the `strict_json` fuzz target read the same documents through both.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;

use super::json_reader::{Error, Number, Reader, Text, Token};

impl de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Error {
            message: message.to_string(),
        }
    }
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value()? {
            Token::Null => visitor.visit_unit(),
            Token::Bool(value) => visitor.visit_bool(value),
            Token::Number(Number::U64(value)) => visitor.visit_u64(value),
            Token::Number(Number::I64(value)) => visitor.visit_i64(value),
            Token::Number(Number::F64(value)) => visitor.visit_f64(value),
            Token::String(Text::Borrowed(text), _) => visitor.visit_borrowed_str(text),
            Token::String(Text::Decoded(text), _) => visitor.visit_str(text),
            Token::Array => {
                let mut access = Elements {
                    reader: self,
                    first: true,
                    done: false,
                };
                let value = visitor.visit_seq(&mut access)?;
                if access.done {
                    Ok(value)
                } else {
                    Err(self.error("trailing characters"))
                }
            }
            Token::Object => {
                let mut access = Members {
                    reader: self,
                    first: true,
                    done: false,
                };
                let value = visitor.visit_map(&mut access)?;
                if access.done {
                    Ok(value)
                } else {
                    Err(self.error("trailing characters"))
                }
            }
        }
    }

    /// As serde_json: a newtype is its inner value.
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// The elements of an array, read as the visitor asks for them.
struct Elements<'r, 'de> {
    reader: &'r mut Reader<'de>,
    first: bool,
    done: bool,
}

impl<'de> SeqAccess<'de> for &mut Elements<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.done {
            return Ok(None);
        }
        if !self.reader.next_element(&mut self.first)? {
            self.done = true;
            return Ok(None);
        }
        seed.deserialize(&mut *self.reader).map(Some)
    }
}

/// The members of an object, read as the visitor asks for them.
struct Members<'r, 'de> {
    reader: &'r mut Reader<'de>,
    first: bool,
    done: bool,
}

impl<'de> MapAccess<'de> for &mut Members<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.done {
            return Ok(None);
        }
        match self.reader.next_key(&mut self.first)? {
            None => {
                self.done = true;
                Ok(None)
            }
            Some((Text::Borrowed(key), _)) => seed.deserialize(Key::Borrowed(key)).map(Some),
            Some((Text::Decoded(key), _)) => seed.deserialize(Key::Decoded(key)).map(Some),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        self.reader.colon()?;
        seed.deserialize(&mut *self.reader)
    }
}

/// An object key, already read: always a string, whatever the visitor asks for.
enum Key<'de, 's> {
    Borrowed(&'de str),
    Decoded(&'s str),
}

impl<'de> de::Deserializer<'de> for Key<'de, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Key::Borrowed(text) => visitor.visit_borrowed_str(text),
            Key::Decoded(text) => visitor.visit_str(text),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}
