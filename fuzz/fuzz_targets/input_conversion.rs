//! Arbitrary JSON through the input conversion against every supported type, and the result
//! back to JSON: errors are fine, a panic is not.
#![no_main]

use flyte_client::inputs::convert_value;
use flyte_client::outputs::literal_to_json;
use flyte_client::{LiteralType, SimpleType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let simple = [
        SimpleType::Integer,
        SimpleType::Float,
        SimpleType::String,
        SimpleType::Boolean,
        SimpleType::Datetime,
        SimpleType::Duration,
        SimpleType::Struct,
        SimpleType::None,
    ];
    let mut types: Vec<LiteralType> = simple.iter().map(|s| LiteralType::simple(*s)).collect();
    types.push(LiteralType::list_of(LiteralType::simple(SimpleType::Integer)));
    types.push(LiteralType::map_of(LiteralType::list_of(LiteralType::simple(SimpleType::Duration))));
    types.push(LiteralType::union_of(vec![
        LiteralType::simple(SimpleType::Datetime),
        LiteralType::simple(SimpleType::None),
    ]));
    types.push(LiteralType::enum_of(vec!["A".into(), "B".into()]));
    for t in &types {
        if let Ok(literal) = convert_value(t, &value, "x") {
            let _ = literal_to_json(&literal);
        }
    }
});
