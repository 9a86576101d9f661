def merge_sorted(a, b):
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i] <= b[j]:
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    out.extend(a[i:])
    return out


"""
Merge two ascending lists into one ascending list.
Example: merge_sorted([1, 4], [2, 3, 9]) == [1, 2, 3, 4, 9]
"""
