def second_largest(xs):
    values = sorted(set(xs))
    return values[-2]
