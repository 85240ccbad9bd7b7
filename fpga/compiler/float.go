package compiler

import "math"

// forward runs one layer in float64 on one sample in ONNX layout (rows, or
// C×H×W). It is the reference the quantizer calibrates against.
func forward(l *layer, x []float64) []float64 {
	switch l.kind {
	case kindFlatten:
		return x
	case kindDense:
		K, N := l.in.n, l.out.n
		y := make([]float64, N)
		copy(y, l.b)
		for k := 0; k < K; k++ {
			xv := x[k]
			if xv == 0 {
				continue
			}
			row := l.w[k*N : k*N+N]
			for j, wv := range row {
				y[j] += xv * wv
			}
		}
		if l.relu {
			relu(y)
		}
		return y
	case kindConv:
		cin, h, w := l.in.c, l.in.h, l.in.w
		cout, oh, ow := l.out.c, l.out.h, l.out.w
		y := make([]float64, cout*oh*ow)
		for o := 0; o < cout; o++ {
			for yy := 0; yy < oh; yy++ {
				for xx := 0; xx < ow; xx++ {
					s := l.b[o]
					for ci := 0; ci < cin; ci++ {
						for a := 0; a < l.kh; a++ {
							iy := yy*l.sh - l.pt + a*l.dh
							if iy < 0 || iy >= h {
								continue
							}
							for b := 0; b < l.kw; b++ {
								ix := xx*l.sw - l.pl + b*l.dw
								if ix < 0 || ix >= w {
									continue
								}
								s += x[(ci*h+iy)*w+ix] * l.w[((o*cin+ci)*l.kh+a)*l.kw+b]
							}
						}
					}
					y[(o*oh+yy)*ow+xx] = s
				}
			}
		}
		if l.relu {
			relu(y)
		}
		return y
	case kindMaxPool, kindAvgPool:
		c, h, w := l.in.c, l.in.h, l.in.w
		oh, ow := l.out.h, l.out.w
		y := make([]float64, c*oh*ow)
		for ch := 0; ch < c; ch++ {
			for yy := 0; yy < oh; yy++ {
				for xx := 0; xx < ow; xx++ {
					best, sum, n := math.Inf(-1), 0.0, 0
					for a := 0; a < l.kh; a++ {
						iy := yy*l.sh - l.pt + a
						for b := 0; b < l.kw; b++ {
							ix := xx*l.sw - l.pl + b
							if iy < 0 || iy >= h || ix < 0 || ix >= w {
								continue
							}
							v := x[(ch*h+iy)*w+ix]
							best = math.Max(best, v)
							sum += v
							n++
						}
					}
					var v float64
					switch {
					case n == 0:
					case l.kind == kindMaxPool:
						v = best
					case l.countPad:
						v = sum / float64(l.kh*l.kw)
					default:
						v = sum / float64(n)
					}
					y[(ch*oh+yy)*ow+xx] = v
				}
			}
		}
		return y
	}
	panic("unknown layer kind")
}

func relu(y []float64) {
	for i, v := range y {
		if v < 0 {
			y[i] = 0
		}
	}
}

func maxAbs(x []float64) float64 {
	m := 0.0
	for _, v := range x {
		m = math.Max(m, math.Abs(v))
	}
	return m
}
