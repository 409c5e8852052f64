/*-------------------------------------------------------------------------
 *
 * asan_initfirst.c
 *		Initialise AddressSanitizer before any other library of the
 *		server (make test-memcheck; test/lib.sh builds and preloads it).
 *
 * The postgres binary is not instrumented, so the ASan runtime is
 * preloaded, and a preloaded library is initialised after all the others.
 * On Debian 12 one of those (libp11-kit, through libldap and libgnutls)
 * calls newlocale() from its constructor; newlocale() holds glibc's locale
 * lock while it calls malloc(); ASan initialises itself on that first
 * malloc() and calls dlerror(), which translates its message and takes the
 * same lock.  The lock is left corrupted, and the next process to touch it
 * (pg_ctl running "postgres -V", every backend at exit) hangs forever.
 *
 * This library is linked with -z initfirst, which makes the dynamic linker
 * run its constructor before every other one, and that constructor
 * initialises ASan while no lock is held.
 *
 *-------------------------------------------------------------------------
 */
extern void __asan_init(void);

__attribute__((constructor))
static void
asan_initfirst(void)
{
	__asan_init();
}
