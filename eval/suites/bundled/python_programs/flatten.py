def flatten(xs):
    out = []
    for x in xs:
        if isinstance(x, list):
            out.append(flatten(x))
        else:
            out.append(x)
    return out


"""
Flatten arbitrarily nested lists into one flat list, keeping the order.
Example: flatten([1, [2, [3]], 4]) == [1, 2, 3, 4]
"""
