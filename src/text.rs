//! Text that other people will see (names, file names, tags): what may not be in it.

/// Bidirectional controls: they reorder what follows them, so `evil\u{202E}fdp.exe` reads as
/// "evilexe.pdf" and a name can be shown backwards. The Arabic letter mark, the left-to-right
/// and right-to-left marks, the embeddings and overrides, the isolates.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// A control character, or a line or paragraph separator (U+2028, U+2029: not controls, but
/// they break a line wherever the text is shown).
pub fn is_break_or_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Either of the above: what tags, file names and professional fields may not hold.
pub fn breaks_or_reorders(c: char) -> bool {
    is_break_or_control(c) || is_bidi_control(c)
}

/// A letter or digit that shows: not one of the blank "letters" (the Hangul fillers) that look
/// like nothing. Zero-width and formatting characters are neither letters nor digits.
pub fn is_visible_letter_or_digit(c: char) -> bool {
    c.is_alphanumeric() && !matches!(c, '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_controls_and_blank_letters_are_told_apart() {
        for c in [
            '\u{202E}', '\u{202A}', '\u{2066}', '\u{2069}', '\u{200F}', '\u{061C}',
        ] {
            assert!(is_bidi_control(c), "{c:?}");
        }
        for c in ['a', 'अ', '\u{200D}', '\u{200C}', ' '] {
            assert!(!is_bidi_control(c), "{c:?}");
        }
        for c in ['\n', '\u{0}', '\u{2028}', '\u{2029}', '\u{85}'] {
            assert!(is_break_or_control(c), "{c:?}");
        }
        assert!(!is_break_or_control(' ') && !is_break_or_control('a'));
        for c in ['a', 'Z', '7', 'अ', 'ß', '山'] {
            assert!(is_visible_letter_or_digit(c), "{c:?}");
        }
        for c in [
            '\u{3164}',
            '\u{115F}',
            '\u{FFA0}',
            '\u{200B}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{2800}',
            '\u{E0041}',
            ' ',
            '.',
        ] {
            assert!(!is_visible_letter_or_digit(c), "{c:?}");
        }
    }
}
