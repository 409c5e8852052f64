/*-------------------------------------------------------------------------
 *
 * standalone.c
 *		A main() for the fuzz targets without libFuzzer: runs the target
 *		once on each file named (or each file in each directory named).
 *
 * This is how `make fuzz-regress` replays the committed corpus and the
 * regression inputs with any compiler that has AddressSanitizer and
 * UndefinedBehaviorSanitizer (gcc does), so that `make test` needs no clang.
 * A failing input aborts the process with the sanitizer's or the check's
 * report; the file's name is printed first.
 *
 *-------------------------------------------------------------------------
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

extern int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int	inputs = 0;

/* Run the target on one file's bytes. */
static void
run_file(const char *path)
{
	FILE	   *f = fopen(path, "rb");
	uint8_t    *buf;
	long		len;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
		fseek(f, 0, SEEK_SET) != 0)
	{
		perror(path);
		exit(2);
	}
	/* An exact-size copy, as libFuzzer passes it: overruns show. */
	buf = malloc(len > 0 ? len : 1);
	if (buf == NULL || (long) fread(buf, 1, len, f) != len)
	{
		perror(path);
		exit(2);
	}
	fclose(f);
	fprintf(stderr, "input %s\n", path);
	LLVMFuzzerTestOneInput(buf, len);
	free(buf);
	inputs++;
}

/* Run the target on a file, or on every file under a directory. */
static void
run_path(const char *path)
{
	struct stat st;
	DIR		   *dir;
	struct dirent *de;

	if (stat(path, &st) != 0)
	{
		perror(path);
		exit(2);
	}
	if (!S_ISDIR(st.st_mode))
	{
		run_file(path);
		return;
	}
	dir = opendir(path);
	if (dir == NULL)
	{
		perror(path);
		exit(2);
	}
	while ((de = readdir(dir)) != NULL)
	{
		char		child[4096];

		if (de->d_name[0] == '.')
			continue;
		snprintf(child, sizeof(child), "%s/%s", path, de->d_name);
		run_path(child);
	}
	closedir(dir);
}

int
main(int argc, char **argv)
{
	int			i;

	for (i = 1; i < argc; i++)
		run_path(argv[i]);
	printf("%s: %d inputs, no failure\n", argv[0], inputs);
	return 0;
}
