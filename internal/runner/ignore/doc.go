// Package ignore compiles and matches gitignore patterns, as used by
// .gitignore and .atelierignore files.
//
// The rules follow gitignore(5): blank lines and lines starting with '#'
// are skipped; trailing spaces are dropped unless escaped with '\'; a
// leading '!' negates (re-includes); "\#" and "\!" start a pattern with a
// literal '#' or '!'; a trailing '/' matches directories only; a pattern
// with a '/' at the start or in the middle is anchored to the directory of
// the file that holds it, otherwise it matches a name at any depth below
// it; '*' matches anything but '/', '?' one character but '/', "[...]" a
// class (ranges, "!" or "^" to negate, POSIX "[:alpha:]"-style names, '\'
// escapes); a leading "**/" matches in all directories, a trailing "/**"
// everything inside, and "/**/" zero or more directories (a segment of
// three or more stars counts as "**"); other "**" are plain stars, as
// gitignore(5) says (git's implementation differs for a "**" after literal
// characters of an anchored pattern, such as "c**/x"). A malformed
// pattern (an unterminated '[', an unknown "[:class:]", a trailing lone
// '\', an empty segment as in "a//b") matches nothing, as in git; so does
// a pattern over 64 KiB.
//
// A Matcher holds the patterns of several files, each tied to the directory
// it came from, and decides for one path at a time. It does not walk
// trees: git's rule that a path inside an excluded directory cannot be
// re-included is the walker's to apply, by not descending into a directory
// the Matcher excludes. It knows nothing of .git; callers exclude it.
package ignore
