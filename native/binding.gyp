{
  "targets": [{
    "target_name": "fuse",
    "include_dirs": [
      "<!(node -p \"require('path').dirname(require.resolve('napi-macros/napi-macros.h'))\")",
      "<!(node -p \"require('path').resolve(require.resolve('fuse-native/package.json'), '../..')\")",
      "<!(node -e \"require('fuse-shared-library/include')\")"
    ],
    "libraries": ["-l:libfuse.so.2"],
    "sources": ["vhfs-fuse.c"],
    "cflags": ["-g", "-O2", "-Wall", "-Wno-unused-function", "-Wno-unused-variable"]
  }]
}
