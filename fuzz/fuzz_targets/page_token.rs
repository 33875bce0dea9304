//! Fuzzes page-token decoding: any text is a page or a clear error, and a
//! token opens only for the list and filter it was issued for.
#![no_main]

use hookplane_model::sealing::SecretBox;
use hookplane_control_plane::page_token::PageTokens;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    kind: String,
    filter: String,
    page_size: i32,
    token: String,
    cursor: String,
}

fuzz_target!(|input: Input| {
    let tokens = PageTokens::new(SecretBox::new(&[9; 32]));
    let _ = tokens.parse(&input.kind, &input.filter, input.page_size, &input.token);
    if input.cursor.is_empty() {
        return;
    }
    let issued = tokens.encode(&input.kind, &input.filter, &input.cursor);
    let page = tokens.parse(&input.kind, &input.filter, 0, &issued).expect("an issued token opens");
    assert_eq!(page.cursor, input.cursor);
    if input.kind != "other" {
        assert!(tokens.parse("other", &input.filter, 0, &issued).is_err(), "not on another list");
    }
});
