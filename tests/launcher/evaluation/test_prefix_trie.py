"""Token tries for rank classification: every shared prefix is one node, rows stay within their cap,
and each option is read at the nodes of the tokens before its own (pure Python, no model)."""

from flanforge.launcher.evaluation.prefix_trie import Trie, option_sequences, pack

EOS = 1
REQUESTS = [  # shared prompt beginnings, a prompt that is a prefix of another, options sharing first tokens
    ([5, 6, 7, 8], [[9, 10, EOS], [9, 11, EOS], [EOS]]),
    ([5, 6, 7, 8, 12], [[9, EOS], [13, 14, EOS]]),
    ([5, 6, 7], [[8, EOS]]),
    ([20, 21], [[22, EOS], [22, 23, EOS]]),
    ([5, 6, 7, 8], [[9, 10, EOS], [9, 11, EOS], [EOS]]),  # a duplicate of the first
]


def distinct_prefixes(requests):
    return {tuple(s[:k]) for r in requests for s in option_sequences(r) for k in range(1, len(s) + 1)}


def path_tokens(row: Trie, node: int) -> list[int]:
    out = []
    while node >= 0:
        out.append(row.tokens[node])
        node = row.parents[node]
    return out[::-1]


def test_one_row_holds_each_distinct_prefix_once():
    rows, _ = pack(REQUESTS, key_cost=0.0)  # attention free: the largest row wins
    assert len(rows) == 1
    row = rows[0]
    assert len(row) == len(distinct_prefixes(REQUESTS))
    assert {tuple(path_tokens(row, n)) for n in range(len(row))} == distinct_prefixes(REQUESTS)
    assert row.depths == [len(path_tokens(row, n)) - 1 for n in range(len(row))]


def test_options_are_read_after_the_tokens_before_them():
    rows, reads = pack(REQUESTS, key_cost=0.0)
    for (prompt, options), request_reads in zip(REQUESTS, reads):
        for option, read in zip(options, request_reads):
            assert read.targets == option
            for j, node in enumerate(read.nodes):
                assert path_tokens(rows[read.row], node) == [*prompt, *option[:j]]


def test_rows_stay_within_the_limit_and_cost_decides():
    requests = [([100 + i] * 30, [[i, EOS], [i + 50, EOS]]) for i in range(8)]  # nothing shared: 32 nodes each
    for limit in (70, 200, 10):  # a request larger than the limit gets a row alone
        rows, reads = pack(requests, key_cost=0.0, limit=limit)
        assert max(len(r) for r in rows) <= max(limit, 32)
        assert sum(len(r) for r in rows) == 8 * 32
        assert sorted(read.row for rs in reads for read in rs) == sorted(r for r, row in enumerate(rows)
                                                                         for _ in range(len(row) // 16))
    rows, _ = pack(requests, key_cost=1.0)  # attention dear: a row per request
    assert [len(r) for r in rows] == [32] * 8


def test_requests_sharing_a_prefix_share_a_row():
    head = list(range(100, 140))
    requests = [(head + [200 + i], [[i, EOS]]) for i in range(4)] + [([300 + i] * 41, [[i, EOS]]) for i in range(4)]
    rows, reads = pack(requests, key_cost=1e-3, limit=128)  # 42 nodes each; the four with the head 48 together
    together = {reads[i][0].row for i in range(4)}
    assert len(together) == 1
    r = together.pop()
    others = sum(reads[i][0].row == r for i in range(4, 8))
    assert len(rows[r]) == len(head) + 2 * 4 + 42 * others  # the head once
