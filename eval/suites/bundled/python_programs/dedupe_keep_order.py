def dedupe_keep_order(xs):
    seen = set()
    out = []
    for x in xs:
        if x not in seen:
            out.append(x)
    return out


"""
Remove duplicates, keeping the first occurrence of each item in order.
Example: dedupe_keep_order([3, 1, 3, 2, 1]) == [3, 1, 2]
"""
