package pulse

import "testing"

// TestLargeClass: the class chosen for n bytes is the smallest of at least
// n bytes, and a buffer put back lands in a class it fully covers.
func TestLargeClass(t *testing.T) {
	prev := 0
	for n := 1; n <= 1<<maxLargeShift; n += 1 + n/37 {
		i, size := largeClass(n)
		if i < 0 || size < n {
			t.Fatalf("largeClass(%d) = %d, %d: too small", n, i, size)
		}
		if i < prev {
			t.Fatalf("largeClass(%d) = %d, below the class of a smaller size (%d)", n, i, prev)
		}
		prev = i
		if i > 0 {
			if _, below := largeClass(size * 4 / 5); below == size && size*4/5 >= n {
				t.Fatalf("largeClass(%d) = %d, but a smaller class fits", n, size)
			}
		}
	}
	if i, _ := largeClass(2<<maxLargeShift + 1); i != -1 {
		t.Errorf("largeClass(over the largest) = %d, want -1", i)
	}
	for _, n := range []int{1 << 15, 40000, 1<<20 + 17, 3<<20 + 5, 1 << maxLargeShift} {
		bp := getLarge(n)
		if len(*bp) != 0 || cap(*bp) < n {
			t.Fatalf("getLarge(%d): len %d cap %d", n, len(*bp), cap(*bp))
		}
		putLarge(bp)
		again := getLarge(n)
		if cap(*again) < n {
			t.Fatalf("getLarge(%d) after putLarge: cap %d", n, cap(*again))
		}
	}
	// A buffer of any capacity goes to a class it covers.
	for _, c := range []int{1 << 15, 1<<15 + 1, 45000, 1<<20 - 1, 5 << 20} {
		b := make([]byte, 0, c)
		putLarge(&b)
		i, size := largeClass(c)
		if size > c {
			i-- // the class below
		}
		if got, ok := largePools[i].Get().(*[]byte); ok && cap(*got) < largeClassSize(i) {
			t.Fatalf("pool %d (size %d) holds a buffer of cap %d", i, largeClassSize(i), cap(*got))
		}
	}
}

func largeClassSize(i int) int {
	k, j := i/4+minLargeShift, i%4
	return (4 + j) << (k - 2)
}
