// Package memtrim gives back, once a program has started, memory that its start-up used and that it will not need
// again: free heap pages (debug.FreeOSMemory), and this process's mappings of its own binary's read-only pages. A
// Go binary's start touches most of its code and read-only data (every package's init, type and descriptor
// registration), and the kernel maps whole 64 KiB windows around each page touched, so a large binary starts with
// most of itself resident. Dropping those mappings leaves the pages in the page cache, shared and clean; the kernel
// maps back the ones the program uses again, on first use, without I/O while they stay cached.
package memtrim
