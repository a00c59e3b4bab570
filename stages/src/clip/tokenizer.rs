//! The CLIP BPE tokenizer, id-for-id with open_clip's `tokenize` (OpenAI's `SimpleTokenizer`
//! as LAION and clip-retrieval run it).
//!
//! Captions are cleaned ([`clean`](super::clean)), then split into words with OpenAI's regex
//! and BPE-encoded with the vocabulary `instant-clip-tokenizer` embeds. A sequence is
//! `<|startoftext|>` (49406), the caption's tokens, `<|endoftext|>` (49407), truncated like
//! `tokenize(..., truncate=True)`: at most `context_length - 2` caption tokens, the last
//! position always the end token.
//!
//! As in open_clip, the literal strings `<start_of_text>` / `<end_of_text>` inside a caption
//! become the special tokens, while OpenAI's spellings `<|startoftext|>` / `<|endoftext|>`
//! are ordinary text (OpenAI's own `clip` package does the opposite).

use instant_clip_tokenizer::{Token, Tokenizer};

use super::clean::clean_caption;

/// Id of `<|startoftext|>`.
pub const START_OF_TEXT: u32 = 49406;
/// Id of `<|endoftext|>`, the token whose position the text transformer pools.
pub const END_OF_TEXT: u32 = 49407;
/// Size of the vocabulary the ids index.
pub const VOCAB_SIZE: usize = 49408;

/// Turns captions into fixed-length rows of token ids. Building one loads the 49,408-entry
/// vocabulary (tens of milliseconds): build it once and share it.
pub struct ClipTokenizer {
    bpe: Tokenizer,
    context_length: usize,
}

/// A batch of tokenized captions: `ids` is `rows × context_length`, zero-padded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Token ids, row-major.
    pub ids: Vec<u32>,
    /// Position of `<|endoftext|>` in each row (where the text embedding is read).
    pub eot: Vec<usize>,
    /// Row length.
    pub context_length: usize,
}

impl ClipTokenizer {
    /// A tokenizer producing rows of `context_length` ids (77 for every released CLIP).
    ///
    /// # Panics
    ///
    /// If `context_length < 2` (there is no room for the start and end tokens).
    #[must_use]
    pub fn new(context_length: usize) -> Self {
        assert!(context_length >= 2, "a CLIP context holds at least the start and end tokens");
        Self { bpe: Tokenizer::new(), context_length }
    }

    /// The row length.
    #[must_use]
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Token ids of one caption, start and end tokens included, truncated, not padded.
    #[must_use]
    pub fn encode(&self, caption: &str) -> Vec<u32> {
        let text = clean_caption(caption);
        let mut tokens: Vec<Token> = Vec::with_capacity(self.context_length);
        self.bpe.encode(&text, &mut tokens);
        let mut ids = Vec::with_capacity(self.context_length);
        ids.push(START_OF_TEXT);
        ids.extend(tokens.iter().take(self.context_length - 2).map(|t| u32::from(t.to_u16())));
        ids.push(END_OF_TEXT);
        ids
    }

    /// Tokenizes and pads a batch of captions.
    #[must_use]
    pub fn encode_batch<S: AsRef<str>>(&self, captions: &[S]) -> TokenBatch {
        let mut ids = vec![0; captions.len() * self.context_length];
        let mut eot = Vec::with_capacity(captions.len());
        for (row, caption) in ids.chunks_exact_mut(self.context_length).zip(captions) {
            let encoded = self.encode(caption.as_ref());
            row[..encoded.len()].copy_from_slice(&encoded);
            eot.push(encoded.len() - 1);
        }
        TokenBatch { ids, eot, context_length: self.context_length }
    }
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer").field("context_length", &self.context_length).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_documented_example() {
        let tok = ClipTokenizer::new(77);
        assert_eq!(tok.encode("a photo of a cat"), [49406, 320, 1125, 539, 320, 2368, 49407]);
    }

    #[test]
    fn truncates_keeping_the_end_token() {
        let tok = ClipTokenizer::new(8);
        let ids = tok.encode("one two three four five six seven eight nine");
        assert_eq!(ids.len(), 8);
        assert_eq!(ids[0], START_OF_TEXT);
        assert_eq!(ids[7], END_OF_TEXT);
        let batch = tok.encode_batch(&["cat", "one two three four five six seven eight nine"]);
        assert_eq!(batch.eot, [2, 7]);
        assert_eq!(&batch.ids[..8], &[START_OF_TEXT, 2368, END_OF_TEXT, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn literal_special_tokens_follow_open_clip() {
        let tok = ClipTokenizer::new(77);
        assert_eq!(tok.encode("a <end_of_text> b")[2], END_OF_TEXT);
        let ids = tok.encode("<|startoftext|>");
        assert_eq!(ids.iter().filter(|&&t| t == START_OF_TEXT).count(), 1, "{ids:?}");
    }
}
