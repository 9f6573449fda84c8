/* Linked with the whole of one fs/ library and only the libraries it
 * declares (fs/meson.build): an undefined reference here is a call that
 * goes against the direction of calls (doc/ARCHITECTURE.md). */
int main(void)
{
	return 0;
}
