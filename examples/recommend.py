"""Load a trained TokenRec folder and recommend items for a known user and for a new user.

```bash
python examples/recommend.py outputs/tokenrec-lastfm 42 "12 873 1001"
```

The first argument is the output folder of `tokenrec run`, the second a raw user id, and the third a new user's
history as raw item ids, oldest first.
"""

import sys

from tokenrec_hf import CollaborativeModel, InteractionData, TokenRecForRetrieval, TokenRecTokenizer


def main(folder: str, user_id: str, new_history: list[str]) -> None:
    tokenizer = TokenRecTokenizer.from_pretrained(folder)
    model = TokenRecForRetrieval.from_pretrained(folder).eval()
    data = InteractionData.from_pretrained(f"{folder}/data")
    collaborative = CollaborativeModel.from_pretrained(f"{folder}/collaborative")

    # A known user: the prompt contains their ID tokens and their history, which is also excluded from the results.
    history = [data.item_ids[item] for item in data.history(data.user_index(user_id), "test")]
    known = model.recommend(tokenizer, users=[user_id], histories=[history], top_k=10)

    # A new user: their collaborative embedding is folded in from the history and tokenized by the frozen
    # user MQ-Tokenizer. Neither the tokenizers nor the LLM are retrained.
    new = model.recommend(tokenizer, histories=[new_history], top_k=10, collaborative_model=collaborative)

    for title, result in ((f"user {user_id}", known), ("the new user", new)):
        print(f"Top-10 for {title}:")
        for rank, (item, score) in enumerate(zip(result.item_ids[0], result.scores[0].tolist(), strict=True), 1):
            print(f"{rank:>4}  {item:>10}  {score:.4f}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3].split())
